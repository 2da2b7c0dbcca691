import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { NodeRecordSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { sha3_256, toHex } from "./hash.js";
import { generateKeyPair } from "./keys.js";
import {
  CallerMismatchError,
  hashRequestMessage,
  InvalidRequestFieldsError,
  requestSigningMessage,
  type SignedRequestFields,
  signRequest,
  verifyRequestSignature,
} from "./request-signing.js";

const caller = generateKeyPair();
const node = generateKeyPair();
const body = create(NodeRecordSchema, { name: "any request message", sequence: 3n });

function fields(overrides: Partial<SignedRequestFields> = {}): SignedRequestFields {
  return {
    nonce: 1_700_000_000_123_456_789n,
    caller: caller.address,
    target: node.address,
    requestId: "req-0001",
    bodyHash: hashRequestMessage(NodeRecordSchema, body),
    ...overrides,
  };
}

describe("request signing", () => {
  it("builds the canonical message nonce.caller.target.requestId.sha3(body)", () => {
    const bodyHashHex = toHex(sha3_256(toBinary(NodeRecordSchema, body)));
    assert.equal(
      requestSigningMessage(fields()),
      `1700000000123456789.${caller.address}.${node.address}.req-0001.${bodyHashHex}`,
    );
    assert.equal(
      requestSigningMessage(fields({ nonce: "1700000000123456789" })),
      requestSigningMessage(fields()),
    );
  });

  it("verifies a signature with the key taken from the caller address", () => {
    const signature = signRequest(caller, fields());
    assert.ok(verifyRequestSignature(fields(), signature));
  });

  it("rejects a signature when any covered field changes", () => {
    const signature = signRequest(caller, fields());
    const otherBody = hashRequestMessage(NodeRecordSchema, { ...body, sequence: 4n });
    for (const changed of [
      fields({ nonce: 1_700_000_000_123_456_790n }),
      fields({ caller: generateKeyPair().address }),
      fields({ target: generateKeyPair().address }),
      fields({ requestId: "req-0002" }),
      fields({ bodyHash: otherBody }),
    ]) {
      assert.equal(verifyRequestSignature(changed, signature), false);
    }
  });

  it("rejects a missing, empty or malformed signature (Bittensor #3392)", () => {
    assert.equal(verifyRequestSignature(fields(), undefined), false);
    assert.equal(verifyRequestSignature(fields(), new Uint8Array(0)), false);
    assert.equal(verifyRequestSignature(fields(), new Uint8Array(64)), false);
    assert.equal(verifyRequestSignature(fields(), new Uint8Array(10)), false);
  });

  it("refuses to sign as someone else", () => {
    assert.throws(() => signRequest(node, fields()), CallerMismatchError);
  });

  it("refuses ambiguous or malformed fields", () => {
    const bad: Partial<SignedRequestFields>[] = [
      { nonce: -1n },
      { nonce: "01" },
      { caller: "not-an-address" },
      { target: "" },
      { target: "has space" },
      { requestId: "a.b" },
      { requestId: "" },
      { bodyHash: new Uint8Array(31) },
    ];
    for (const overrides of bad) {
      assert.throws(() => requestSigningMessage(fields(overrides)), InvalidRequestFieldsError);
      assert.equal(verifyRequestSignature(fields(overrides), signRequest(caller, fields())), false);
    }
  });

  it("allows dots in the target, where they cannot shift field boundaries", () => {
    const target = "tessera.compute.v1.TensorService/Forward";
    const signature = signRequest(caller, fields({ target }));
    assert.ok(verifyRequestSignature(fields({ target }), signature));
  });
});
