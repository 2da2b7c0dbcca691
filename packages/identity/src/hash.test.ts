import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bytesEqual, fromHex, InvalidHexError, sha3_256, sha256, toHex } from "./hash.js";

const abc = new TextEncoder().encode("abc");

describe("hash", () => {
  it("matches the FIPS test vectors for 'abc'", () => {
    assert.equal(
      toHex(sha256(abc)),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    assert.equal(
      toHex(sha3_256(abc)),
      "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
    );
  });

  it("round-trips hex and rejects malformed hex", () => {
    const bytes = Uint8Array.from([0, 1, 0xab, 0xff]);
    assert.equal(toHex(bytes), "0001abff");
    assert.deepEqual(fromHex("0001ABff"), bytes);
    assert.throws(() => fromHex("abc"), InvalidHexError);
    assert.throws(() => fromHex("zz"), InvalidHexError);
    assert.throws(() => fromHex("0x00"), InvalidHexError);
    assert.throws(() => fromHex("00", 2), /expected 2 bytes/);
  });

  it("compares bytes", () => {
    assert.ok(bytesEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2)));
    assert.equal(bytesEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 3)), false);
    assert.equal(bytesEqual(Uint8Array.of(1), Uint8Array.of(1, 2)), false);
  });
});
