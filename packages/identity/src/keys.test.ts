import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import { toHex } from "./hash.js";
import { generateKeyPair, keyPairFromSecretKey, sign, verify } from "./keys.js";

const message = new TextEncoder().encode("rent me a GPU");

describe("keys", () => {
  it("signs and verifies", () => {
    const keyPair = generateKeyPair();
    const signature = keyPair.sign(message);
    assert.equal(signature.length, 64);
    assert.ok(verify(keyPair.publicKey, message, signature));
    assert.deepEqual(sign(keyPair.exportSecretKey(), message), signature);
  });

  it("rejects a signature over another message, by another key, or tampered", () => {
    const keyPair = generateKeyPair();
    const signature = keyPair.sign(message);
    const other = Uint8Array.from(message);
    other[0] = (other[0] as number) ^ 1;
    assert.equal(verify(keyPair.publicKey, other, signature), false);
    assert.equal(verify(generateKeyPair().publicKey, message, signature), false);
    const tampered = Uint8Array.from(signature);
    tampered[10] = (tampered[10] as number) ^ 0x80;
    assert.equal(verify(keyPair.publicKey, message, tampered), false);
  });

  it("treats empty or malformed inputs as a failed check, not a crash", () => {
    const keyPair = generateKeyPair();
    assert.equal(verify(keyPair.publicKey, message, new Uint8Array(0)), false);
    assert.equal(verify(keyPair.publicKey, message, new Uint8Array(64)), false);
    assert.equal(verify(new Uint8Array(32).fill(0xff), message, keyPair.sign(message)), false);
    assert.equal(verify(new Uint8Array(3), message, keyPair.sign(message)), false);
  });

  it("rebuilds the same key pair from its secret key", () => {
    const keyPair = generateKeyPair();
    const again = keyPairFromSecretKey(keyPair.exportSecretKey());
    assert.equal(again.address, keyPair.address);
    assert.deepEqual(again.publicKey, keyPair.publicKey);
  });

  it("never prints its secret", () => {
    const keyPair = generateKeyPair();
    const secretHex = toHex(keyPair.exportSecretKey());
    const secretBytes = Array.from(keyPair.exportSecretKey()).join(",");
    const printed = [
      JSON.stringify(keyPair),
      JSON.stringify({ nested: [keyPair] }),
      inspect(keyPair, { showHidden: true, depth: 10 }),
      inspect({ nested: keyPair }, { showHidden: true }),
      inspect(keyPair, { customInspect: false, showHidden: true }),
      String(keyPair),
      `${keyPair}`,
      Object.values(keyPair).map(String).join(" "),
    ];
    for (const text of printed) {
      assert.ok(!text.includes(secretHex), `secret hex printed in ${text}`);
      assert.ok(!text.includes(secretBytes), `secret bytes printed in ${text}`);
    }
    assert.equal(JSON.stringify(keyPair), JSON.stringify({ address: keyPair.address }));
    assert.equal(String(keyPair), `KeyPair(${keyPair.address})`);
    assert.ok(inspect(keyPair).includes(keyPair.address));
    assert.deepEqual(Object.keys(keyPair).sort(), ["address", "publicKey"]);
  });

  it("exportSecretKey returns a copy", () => {
    const keyPair = generateKeyPair();
    const copy = keyPair.exportSecretKey();
    copy.fill(0);
    assert.ok(verify(keyPair.publicKey, message, keyPair.sign(message)));
  });

  it("rejects a secret key of the wrong length", () => {
    assert.throws(() => keyPairFromSecretKey(new Uint8Array(31)), TypeError);
  });
});
