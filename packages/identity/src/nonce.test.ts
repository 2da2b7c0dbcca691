import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createNonceSource, InvalidNonceError, MAX_NONCE, parseNonce } from "./nonce.js";

describe("nonce", () => {
  it("is the wall clock in nanoseconds", () => {
    const next = createNonceSource({ nowMs: () => 1_700_000_000_123 });
    assert.equal(next(), 1_700_000_000_123_000_000n);
  });

  it("strictly increases within a millisecond and when the clock steps back", () => {
    let now = 1_000;
    const next = createNonceSource({ nowMs: () => now });
    const a = next();
    const b = next();
    now = 900;
    const c = next();
    now = 2_000;
    const d = next();
    assert.deepEqual(
      [a, b, c, d],
      [1_000_000_000n, 1_000_000_001n, 1_000_000_002n, 2_000_000_000n],
    );
  });

  it("parses canonical decimal only", () => {
    assert.equal(parseNonce("0"), 0n);
    assert.equal(parseNonce("1700000000123000000"), 1_700_000_000_123_000_000n);
    assert.equal(parseNonce(MAX_NONCE.toString()), MAX_NONCE);
    for (const bad of ["", "-1", "+1", "01", "1e9", "0x10", " 1", (MAX_NONCE + 1n).toString()]) {
      assert.throws(() => parseNonce(bad), InvalidNonceError, `accepted ${JSON.stringify(bad)}`);
    }
  });
});
