import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { toHex } from "./hash.js";
import { PasswordRequiredError, WrongPasswordError } from "./key-file.js";
import {
  createKeystore,
  DuplicateKeyNameError,
  InvalidKeyNameError,
  KeyNotFoundError,
  type Keystore,
  resolveTesseraHome,
} from "./keystore.js";

describe("keystore", () => {
  let home: string;
  let keystore: Keystore;
  before(async () => {
    home = await mkdtemp(join(tmpdir(), "tessera-keystore-"));
    keystore = createKeystore({ homeDir: home, scryptCost: { N: 2 ** 10, r: 8, p: 1 } });
  });
  after(async () => {
    await rm(home, { recursive: true, force: true });
  });

  it("lists nothing before any key exists", async () => {
    assert.deepEqual(await keystore.list(), []);
  });

  it("creates, lists, describes and loads keys", async () => {
    const plain = await keystore.create("node-1");
    const locked = await keystore.create("client_a", { password: "hunter2" });
    assert.equal(plain.entry.address, plain.keyPair.address);
    assert.equal(plain.entry.encrypted, false);
    assert.equal(locked.entry.encrypted, true);

    const listed = await keystore.list();
    assert.deepEqual(
      listed.map((row) => (row.ok ? [row.name, row.address, row.encrypted] : row)),
      [
        ["client_a", locked.keyPair.address, true],
        ["node-1", plain.keyPair.address, false],
      ],
    );
    assert.equal((await keystore.describe("client_a")).address, locked.keyPair.address);
    assert.equal((await keystore.load("node-1")).address, plain.keyPair.address);
    assert.equal((await keystore.load("client_a", "hunter2")).address, locked.keyPair.address);
    await assert.rejects(keystore.load("client_a", "nope"), WrongPasswordError);
    await assert.rejects(keystore.load("client_a"), PasswordRequiredError);
  });

  it("stores files 0600 in a 0700 directory, without the plain secret when encrypted", async () => {
    const { entry, keyPair } = await keystore.create("secretive", { password: "pw" });
    assert.equal(entry.path, join(home, "keys", "secretive.json"));
    assert.equal((await stat(entry.path)).mode & 0o777, 0o600);
    assert.equal((await stat(join(home, "keys"))).mode & 0o777, 0o700);
    const text = await readFile(entry.path, "utf8");
    assert.ok(!text.includes(toHex(keyPair.exportSecretKey())));
  });

  it("refuses a duplicate name and keeps the first key", async () => {
    const first = await keystore.create("dup");
    await assert.rejects(keystore.create("dup"), DuplicateKeyNameError);
    await assert.rejects(keystore.create("dup"), /a key named "dup" already exists/);
    assert.equal((await keystore.load("dup")).address, first.keyPair.address);
  });

  it("refuses names outside [a-z0-9_-]{1,64}", async () => {
    for (const name of ["", "Upper", "../escape", "a/b", "dot.name", "x".repeat(65), "spa ce"]) {
      await assert.rejects(keystore.create(name), InvalidKeyNameError, `accepted ${name}`);
      await assert.rejects(keystore.load(name), InvalidKeyNameError);
    }
    await keystore.create("x".repeat(64));
  });

  it("reports an unknown name", async () => {
    await assert.rejects(keystore.load("ghost"), KeyNotFoundError);
    await assert.rejects(keystore.describe("ghost"), /no key named "ghost"/);
  });

  it("lists a corrupt file with its problem instead of failing the whole list", async () => {
    await writeFile(join(home, "keys", "corrupt.json"), "{}");
    const listed = await keystore.list();
    const corrupt = listed.find((row) => row.name === "corrupt");
    assert.ok(corrupt && !corrupt.ok);
    assert.match(corrupt.problem, /unsupported version/);
    assert.ok(listed.some((row) => row.ok && row.name === "node-1"));
    await rm(join(home, "keys", "corrupt.json"));
  });

  it("resolves TESSERA_HOME, defaulting to ~/.tessera", () => {
    assert.equal(resolveTesseraHome({}), join(homedir(), ".tessera"));
    assert.equal(resolveTesseraHome({ TESSERA_HOME: "" }), join(homedir(), ".tessera"));
    assert.equal(resolveTesseraHome({ TESSERA_HOME: "/srv/t" }), "/srv/t");
    assert.equal(resolveTesseraHome({ TESSERA_HOME: "rel" }), resolve("rel"));
  });
});
