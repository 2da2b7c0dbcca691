import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import { toHex } from "./hash.js";
import {
  createKeyFile,
  type EncryptedSecret,
  InvalidKeyFileError,
  type KeyFile,
  KeyFileExistsError,
  openKeyFile,
  PasswordRequiredError,
  parseKeyFile,
  readKeyFile,
  WrongPasswordError,
  writeKeyFile,
} from "./key-file.js";
import { generateKeyPair } from "./keys.js";

// Cheap scrypt for tests; one test below uses the default cost.
const scryptCost = { N: 2 ** 10, r: 8, p: 1 };

function flipHexChar(hex: string, index: number): string {
  const ch = hex[index] === "0" ? "1" : "0";
  return hex.slice(0, index) + ch + hex.slice(index + 1);
}

describe("key file", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-key-file-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("round-trips a plain key", async () => {
    const keyPair = generateKeyPair();
    const file = await createKeyFile("alice", keyPair);
    assert.equal(file.secret.kind, "plain");
    assert.equal(file.address, keyPair.address);
    const opened = await openKeyFile(file);
    assert.equal(opened.address, keyPair.address);
    assert.deepEqual(opened.exportSecretKey(), keyPair.exportSecretKey());
  });

  it("round-trips an encrypted key, with the default scrypt cost", async () => {
    const keyPair = generateKeyPair();
    const file = await createKeyFile("alice", keyPair, { password: "correct horse" });
    const secret = file.secret as EncryptedSecret;
    assert.equal(secret.kind, "encrypted");
    assert.equal(secret.kdfParams.N, 2 ** 17);
    assert.ok(!JSON.stringify(file).includes(toHex(keyPair.exportSecretKey())));
    const opened = await openKeyFile(file, "correct horse");
    assert.deepEqual(opened.exportSecretKey(), keyPair.exportSecretKey());
  });

  it("refuses a wrong or missing password", async () => {
    const file = await createKeyFile("alice", generateKeyPair(), {
      password: "right",
      scryptCost,
    });
    await assert.rejects(openKeyFile(file, "wrong"), WrongPasswordError);
    await assert.rejects(openKeyFile(file, "wrong"), /wrong password for key "alice"/);
    await assert.rejects(openKeyFile(file), PasswordRequiredError);
    await assert.rejects(openKeyFile(file, ""), PasswordRequiredError);
  });

  it("normalizes the password (NFKC), so composed and decomposed forms both open it", async () => {
    const keyPair = generateKeyPair();
    const file = await createKeyFile("alice", keyPair, { password: "caf\u00e9", scryptCost });
    const opened = await openKeyFile(file, "cafe\u0301");
    assert.equal(opened.address, keyPair.address);
  });

  it("refuses tampered ciphertext, nonce, or a secret moved under another address", async () => {
    const file = await createKeyFile("alice", generateKeyPair(), { password: "pw", scryptCost });
    const secret = file.secret as EncryptedSecret;
    const withSecret = (patch: Partial<EncryptedSecret>): KeyFile => ({
      ...file,
      secret: { ...secret, ...patch },
    });
    for (const index of [0, 40, secret.ciphertext.length - 1]) {
      await assert.rejects(
        openKeyFile(withSecret({ ciphertext: flipHexChar(secret.ciphertext, index) }), "pw"),
        WrongPasswordError,
      );
    }
    await assert.rejects(
      openKeyFile(withSecret({ nonce: flipHexChar(secret.nonce, 0) }), "pw"),
      WrongPasswordError,
    );
    const other = generateKeyPair();
    await assert.rejects(
      openKeyFile({ ...file, address: other.address, publicKey: toHex(other.publicKey) }, "pw"),
      WrongPasswordError,
    );
  });

  it("refuses a plain file whose secret does not match its public key", async () => {
    const file = await createKeyFile("alice", generateKeyPair());
    const other = await createKeyFile("alice", generateKeyPair());
    await assert.rejects(
      openKeyFile({ ...file, secret: other.secret }),
      /secret key does not match its public key/,
    );
  });

  it("says what is wrong with a malformed file", () => {
    const good = { version: 1, name: "a", address: "", publicKey: "", createdAt: "x" };
    assert.throws(() => parseKeyFile("nope"), /not a JSON object/);
    assert.throws(() => parseKeyFile({ ...good, version: 2 }), /unsupported version 2/);
    assert.throws(() => parseKeyFile(good), InvalidKeyFileError);
    const keyPair = generateKeyPair();
    const wrongAddress = {
      ...good,
      address: generateKeyPair().address,
      publicKey: toHex(keyPair.publicKey),
      secret: { kind: "plain", secretKey: toHex(keyPair.exportSecretKey()) },
    };
    assert.throws(() => parseKeyFile(wrongAddress), /address does not derive from publicKey/);
  });

  it("refuses to read a file that demands absurd scrypt memory", async () => {
    const file = await createKeyFile("alice", generateKeyPair(), { password: "pw", scryptCost });
    const secret = file.secret as EncryptedSecret;
    const greedy = {
      ...file,
      secret: { ...secret, kdfParams: { ...secret.kdfParams, N: 2 ** 30 } },
    };
    assert.throws(() => parseKeyFile(greedy), /needs more than/);
  });

  it("writes mode 0600 files atomically and refuses to replace one", async () => {
    const keyPair = generateKeyPair();
    const file = await createKeyFile("alice", keyPair, { password: "pw", scryptCost });
    const path = join(dir, "alice.json");
    await writeKeyFile(path, file);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await readKeyFile(path), file);
    await assert.rejects(writeKeyFile(path, file), KeyFileExistsError);
    await writeKeyFile(
      path,
      { ...file, createdAt: "2030-01-01T00:00:00.000Z" },
      { overwrite: true },
    );
    assert.equal((await readKeyFile(path)).createdAt, "2030-01-01T00:00:00.000Z");
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const text = await readFile(path, "utf8");
    assert.ok(!text.includes(toHex(keyPair.exportSecretKey())));
    const { readdir } = await import("node:fs/promises");
    assert.deepEqual(await readdir(dir), ["alice.json"], "no temp file left behind");
  });

  it("reports a file that is not JSON", async () => {
    const path = join(dir, "broken.json");
    await writeFile(path, "{ not json");
    await assert.rejects(readKeyFile(path), /broken\.json: not valid JSON/);
  });

  it("a loaded key never prints its secret", async () => {
    const keyPair = generateKeyPair();
    const secretHex = toHex(keyPair.exportSecretKey());
    const opened = await openKeyFile(
      await createKeyFile("alice", keyPair, { password: "pw", scryptCost }),
      "pw",
    );
    for (const text of [JSON.stringify(opened), inspect(opened), String(opened)]) {
      assert.ok(!text.includes(secretHex));
      assert.ok(text.includes(keyPair.address));
    }
  });
});
