import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { readKeyFile } from "@tessera/identity/key-file";
import { writeComposeEnvironment } from "./compose-env.js";
import { SERVICES } from "./services.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-compose-env-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function envOf(name: string): Promise<Record<string, string>> {
  const text = await readFile(join(dir, `${name}.env`), "utf8");
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.indexOf("=");
    env[line.slice(0, at)] = line.slice(at + 1);
  }
  return env;
}

const addressOf = async (name: string) => (await readKeyFile(join(dir, name, "key.json"))).address;

test("every process gets its key and an env file naming its peers by Compose service name", async () => {
  const written = await writeComposeEnvironment(dir);
  assert.equal(written.length, SERVICES.length);

  const node = await envOf("compute-node");
  assert.equal(node.PORT, "7004");
  assert.equal(node.GATEWAY_URL, "http://gateway:7002");
  assert.equal(node.GATEWAY_ADDRESS, await addressOf("gateway"));
  assert.equal(node.JOB_SERVER_ADDRESS, await addressOf("job-server"));
  assert.equal(node.MODELS_FILE, "/models/catalog.json");
  assert.equal(node.PUBLIC_URL, "http://compute-node:7004");
  assert.equal((await envOf("compute-node-2")).PRICE_PER_HOUR, "60000");

  const validator = await envOf("validator-2");
  assert.equal(validator.REGISTRY_ROLE, "validator");
  assert.equal(validator.PORT, "7007");
  assert.equal(validator.TRUSTED_REGISTRIES, await addressOf("registry"));
  assert.equal(validator.MODEL_DIRS, "/models");

  const wallet = await envOf("wallet");
  assert.equal(wallet.READERS, await addressOf("registry"));
  assert.match(wallet.GENESIS ?? "", new RegExp(`^${await addressOf("validator-1")}=\\d+,`));
  assert.equal(
    (await envOf("registry")).TRUSTED_REPORTERS,
    `${await addressOf("job-server")},${await addressOf("gateway")}`,
  );
});

test("running it again keeps every key", async () => {
  const before = await addressOf("wallet");
  await writeComposeEnvironment(dir);
  assert.equal(await addressOf("wallet"), before);
  assert.equal((await envOf("registry")).WALLET_ADDRESS, before);
});
