import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import {
  type NodeRecord,
  NodeRecordSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { GossipResponseSchema } from "@tessera/proto/tessera/registry/v1/metagraph_service_pb.js";
import { openStore, type Store } from "@tessera/store";
import { createDirectory, type Directory } from "../directory/directory.js";
import { registryMigrations } from "../directory/migrations.js";
import type { RegistryTables } from "../directory/tables.js";
import { PROTOCOL_VERSION } from "../validation/protocol-version.js";
import { createMetagraph } from "./metagraph.js";
import { normalizePeerUrl, parseRegistryPeers } from "./peers.js";

const NOW = new Date("2030-01-01T00:00:00Z");
let scratch: string;
let stores: Store<RegistryTables>[] = [];

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "metagraph-unit-"));
});
after(async () => {
  for (const store of stores) await store.close();
  stores = [];
  await rm(scratch, { recursive: true, force: true });
});

async function freshDirectory(name: string): Promise<Directory> {
  const store = await openStore<RegistryTables>({
    dataDir: scratch,
    fileName: `${name}.sqlite`,
    migrations: registryMigrations,
  });
  stores.push(store);
  return createDirectory({ store, powDifficulty: 0, clock: () => NOW });
}

function record(
  key: KeyPair,
  issuedAt: Date,
  nodeType = NodeType.COMPUTE,
  url = "",
): Promise<NodeRecord> {
  return sealNodeRecord(
    create(NodeRecordSchema, {
      protocolVersion: PROTOCOL_VERSION,
      nodeType,
      sequence: 1n,
      issuedAt: timestampFromDate(issuedAt),
      ...(url ? { endpoint: { url } } : {}),
    }),
    key,
    0,
  );
}

describe("registry peers", () => {
  test("REGISTRY_PEERS takes address@url entries and bare URLs", () => {
    const address = generateKeyPair().address;
    assert.deepEqual(
      parseRegistryPeers(` ${address}@http://registry-2:7003/ , https://r3.example ,`),
      [
        { url: "http://registry-2:7003", address },
        { url: "https://r3.example", address: undefined },
      ],
    );
    assert.throws(() => parseRegistryPeers("tsr1nope@http://x:1"), /not a valid address/);
    assert.throws(() => parseRegistryPeers("ftp://x"), /expected \[<address>@\]http\(s\)/);
    assert.equal(normalizePeerUrl("http://user:pw@x:1"), undefined);
  });
});

describe("metagraph", () => {
  test("sends its records newest first, in batches that rotate so every record gets through", async () => {
    const directory = await freshDirectory("batches");
    const keys = Array.from({ length: 5 }, generateKeyPair);
    for (const [i, key] of keys.entries()) {
      await directory.acceptRecord(await record(key, new Date(NOW.getTime() - i * 1000)));
    }
    const metagraph = createMetagraph({
      directory,
      selfAddress: generateKeyPair().address,
      selfUrl: "http://self:1",
      batchSize: 2,
    });
    const peer = { url: "http://peer:1", address: generateKeyPair().address };
    const pages: string[][] = [];
    for (let i = 0; i < 3; i++)
      pages.push((await metagraph.outgoing(peer)).nodeRecords.map((r) => r.address));
    assert.deepEqual(pages[0], [keys[0]?.address, keys[1]?.address], "newest first");
    assert.deepEqual(new Set(pages.flat()), new Set(keys.map((k) => k.address)));
    assert.deepEqual(
      (await metagraph.outgoing(peer)).nodeRecords.map((r) => r.address),
      pages[0],
      "wraps around",
    );
  });

  test("ignores records older than the record lifetime, and learns peers but never itself", async () => {
    const directory = await freshDirectory("lifetime");
    const metagraph = createMetagraph({
      directory,
      selfAddress: generateKeyPair().address,
      selfUrl: "http://self:1/",
      recordLifetimeMs: 60_000,
      clock: () => NOW,
    });
    const fresh = generateKeyPair();
    const old = generateKeyPair();
    const report = await metagraph.absorb(
      create(GossipResponseSchema, {
        protocolVersion: PROTOCOL_VERSION,
        peers: ["http://self:1", "http://other:2/", "not a url"],
        nodeRecords: [
          await record(fresh, NOW),
          await record(old, new Date(NOW.getTime() - 120_000)),
        ],
      }),
      { url: "http://other:2", address: undefined },
    );
    assert.deepEqual(report, { accepted: 1, ignored: 1, rejected: 0 });
    assert.ok(await directory.getEntry(fresh.address));
    assert.equal(await directory.getEntry(old.address), undefined);
    assert.deepEqual(await metagraph.peers(), [{ url: "http://other:2", address: undefined }]);

    // Once the peer's signed registry record arrives, its address is known.
    const other = generateKeyPair();
    await directory.acceptRecord(await record(other, NOW, NodeType.REGISTRY, "http://other:2"));
    assert.deepEqual(await metagraph.peers(), [{ url: "http://other:2", address: other.address }]);
  });

  test("remembers at most maxPeers peers", async () => {
    const directory = await freshDirectory("maxpeers");
    const metagraph = createMetagraph({
      directory,
      selfAddress: generateKeyPair().address,
      selfUrl: "http://self:1",
      maxPeers: 3,
    });
    await metagraph.absorb(
      create(GossipResponseSchema, {
        protocolVersion: PROTOCOL_VERSION,
        peers: Array.from({ length: 10 }, (_, i) => `http://p${i}:1`),
      }),
      { url: "http://p0:1", address: undefined },
    );
    assert.equal((await metagraph.peers()).length, 3);
  });
});
