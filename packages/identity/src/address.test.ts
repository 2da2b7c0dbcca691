import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ADDRESS_LENGTH,
  addressFromPublicKey,
  InvalidAddressError,
  isAddress,
  publicKeyFromAddress,
} from "./address.js";
import { generateKeyPair } from "./keys.js";

const BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

function reasonOf(text: string): string | undefined {
  try {
    publicKeyFromAddress(text);
    return undefined;
  } catch (error) {
    assert.ok(error instanceof InvalidAddressError);
    return error.reason;
  }
}

describe("address", () => {
  it("round-trips a public key through its address", () => {
    for (let i = 0; i < 20; i++) {
      const { publicKey, address } = generateKeyPair();
      assert.match(address, /^tsr1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]+$/);
      assert.equal(address.length, ADDRESS_LENGTH);
      assert.equal(addressFromPublicKey(publicKey), address);
      assert.deepEqual(publicKeyFromAddress(address), publicKey);
      assert.ok(isAddress(address));
    }
  });

  it("rejects every one-character substitution with a checksum error", () => {
    const { address } = generateKeyPair();
    for (let pos = 4; pos < address.length; pos++) {
      for (const ch of BECH32_CHARSET) {
        if (ch === address[pos]) continue;
        const typo = address.slice(0, pos) + ch + address.slice(pos + 1);
        assert.equal(reasonOf(typo), "bad_checksum", `typo at ${pos} accepted: ${typo}`);
        assert.equal(isAddress(typo), false);
      }
    }
  });

  it("rejects two swapped neighbouring characters", () => {
    const { address } = generateKeyPair();
    let swaps = 0;
    for (let pos = 4; pos < address.length - 1; pos++) {
      if (address[pos] === address[pos + 1]) continue;
      const swapped =
        address.slice(0, pos) + address[pos + 1] + address[pos] + address.slice(pos + 2);
      assert.equal(isAddress(swapped), false);
      swaps++;
    }
    assert.ok(swaps > 40);
  });

  it("says what is wrong: length, prefix, character, case", () => {
    const { address } = generateKeyPair();
    assert.equal(reasonOf(address.slice(0, -1)), "wrong_length");
    assert.equal(reasonOf(`${address}q`), "wrong_length");
    assert.equal(reasonOf(`abc${address.slice(3)}`), "wrong_prefix");
    assert.equal(reasonOf(`${address.slice(0, 10)}b${address.slice(11)}`), "invalid_character");
    assert.equal(reasonOf(address.toUpperCase()), "not_lowercase");
    assert.equal(reasonOf("tsrqqqq"), "missing_separator");
    assert.equal(reasonOf(""), "missing_separator");
    assert.throws(
      () => publicKeyFromAddress(address.slice(0, -1)),
      /invalid address: expected 62 characters, got 61/,
    );
    assert.throws(() => publicKeyFromAddress(`bc${address.slice(3)}`), /expected prefix "tsr"/);
  });

  it("isAddress is false for non-strings", () => {
    assert.equal(isAddress(undefined), false);
    assert.equal(isAddress(42), false);
  });

  it("refuses to encode a public key of the wrong length", () => {
    assert.throws(() => addressFromPublicKey(new Uint8Array(31)), TypeError);
  });
});
