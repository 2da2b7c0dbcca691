import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AccessTokenError, issueAccessToken, verifyAccessToken } from "./access-token.js";
import { generateKeyPair } from "./keys.js";

const issuer = generateKeyPair();
const node = generateKeyPair().address;
const client = generateKeyPair().address;
const claims = { nodeAddress: node, clientAddress: client, modelId: "m", jobId: "task-1" };
const now = new Date("2026-11-22T06:00:00Z");
const expect = { ...claims, trustedIssuers: [issuer.address], now };

function refusal(fn: () => unknown): AccessTokenError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof AccessTokenError, String(error));
    return error;
  }
  assert.fail("the token was accepted");
}

describe("access tokens", () => {
  const { token, expiresAt } = issueAccessToken(issuer, claims, { ttlMs: 60_000, now });

  it("a node accepts a token from an issuer it trusts, for its exact claims", () => {
    const grant = verifyAccessToken(token, expect);
    assert.equal(grant.issuerAddress, issuer.address);
    assert.equal(grant.jobId, "task-1");
    assert.equal(expiresAt.getTime(), now.getTime() + 60_000);
  });

  it("missing, malformed, forged, untrusted and expired tokens are unauthenticated", () => {
    assert.equal(refusal(() => verifyAccessToken("", expect)).code, "unauthenticated");
    assert.match(refusal(() => verifyAccessToken("abc", expect)).message, /malformed/);
    const [grantPart, signature = ""] = token.split(".");
    const flipped = `${signature.slice(0, 10)}${signature[10] === "A" ? "B" : "A"}${signature.slice(11)}`;
    assert.match(
      refusal(() => verifyAccessToken(`${grantPart}.${flipped}`, expect)).message,
      /signature/,
    );
    const other = issueAccessToken(generateKeyPair(), claims, { ttlMs: 60_000, now }).token;
    assert.match(refusal(() => verifyAccessToken(other, expect)).message, /not an issuer/);
    const late = new Date(now.getTime() + 60_000);
    const expired = refusal(() => verifyAccessToken(token, { ...expect, now: late }));
    assert.equal(expired.code, "unauthenticated");
    assert.match(expired.message, /expired/);
  });

  it("a valid token for another node, client, model or job is permission_denied", () => {
    for (const change of [
      { nodeAddress: generateKeyPair().address },
      { clientAddress: generateKeyPair().address },
      { modelId: "other" },
      { jobId: "task-2" },
    ]) {
      const error = refusal(() => verifyAccessToken(token, { ...expect, ...change }));
      assert.equal(error.code, "permission_denied");
    }
  });

  it("a grant copied under another issuer's name does not verify", () => {
    const mallory = generateKeyPair();
    const [, signature] = issueAccessToken(mallory, claims, { ttlMs: 60_000, now }).token.split(
      ".",
    );
    const [grantPart] = token.split(".");
    assert.match(
      refusal(() => verifyAccessToken(`${grantPart}.${signature}`, expect)).message,
      /signature/,
    );
  });
});
