import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { loadOrCreateServiceKey } from "./service-key.js";

const dir = await mkdtemp(join(tmpdir(), "tessera-service-key-"));
after(() => rm(dir, { recursive: true, force: true }));

test("a service keeps the key it made on its first start", async () => {
  const path = join(dir, "registry", "key.json");
  const first = await loadOrCreateServiceKey({ path, name: "registry" });
  const second = await loadOrCreateServiceKey({ path, name: "registry" });
  assert.equal(first.created, true);
  assert.equal(second.created, false);
  assert.equal(second.keyPair.address, first.keyPair.address);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
});

test("concurrent first starts agree on one key", async () => {
  const path = join(dir, "race", "key.json");
  const results = await Promise.all(
    Array.from({ length: 8 }, () => loadOrCreateServiceKey({ path, name: "race" })),
  );
  assert.equal(new Set(results.map((r) => r.keyPair.address)).size, 1);
  assert.equal(results.filter((r) => r.created).length, 1);
});

test("an encrypted service key needs its password and never stores the secret in clear", async () => {
  const path = join(dir, "sealed", "key.json");
  const { keyPair } = await loadOrCreateServiceKey({ path, name: "sealed", password: "pw" });
  const text = await readFile(path, "utf8");
  assert.ok(!text.includes(Buffer.from(keyPair.exportSecretKey()).toString("hex")));
  await assert.rejects(loadOrCreateServiceKey({ path, name: "sealed" }), /password/i);
  const again = await loadOrCreateServiceKey({ path, name: "sealed", password: "pw" });
  assert.equal(again.keyPair.address, keyPair.address);
});
