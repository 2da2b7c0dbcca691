/**
 * Metagraph gossip between real registries: servers on port 0, each with its own key, store,
 * directory and signed-request verifier.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor, createVerifyingInterceptor } from "@tessera/auth";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import {
  type NodeRecord,
  NodeRecordSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { MetagraphService } from "@tessera/proto/tessera/registry/v1/metagraph_service_pb.js";
import { createLogger, type ServiceServer, startServiceServer } from "@tessera/runtime";
import {
  createNonceStore,
  type NonceStoreTables,
  nonceStoreMigrations,
  openStore,
  type Store,
} from "@tessera/store";
import { createDirectory, type Directory } from "./directory/directory.js";
import { registryMigrations } from "./directory/migrations.js";
import type { RegistryTables } from "./directory/tables.js";
import { createGossipLoop, type GossipLoop } from "./gossip/gossip-loop.js";
import { createMetagraph, type Metagraph } from "./gossip/metagraph.js";
import type { RegistryPeer } from "./gossip/peers.js";
import { sealRegistryRecord } from "./gossip/self-record.js";
import { createGossipCaller, createMetagraphService } from "./metagraph-service.js";
import { PROTOCOL_VERSION } from "./validation/protocol-version.js";

const POW = 4;
const logger = createLogger({ service: "test", level: "silent" });
const limits = { maxMessageBytes: 4 << 20, defaultDeadlineMs: 10_000, maxDeadlineMs: 30_000 };
let scratch: string;
const closers: (() => unknown)[] = [];

/** A registry: its key, store, directory, metagraph, server and gossip loop. */
interface Registry {
  readonly key: KeyPair;
  readonly directory: Directory;
  readonly metagraph: Metagraph;
  readonly server: ServiceServer;
  readonly loop: GossipLoop;
}

async function startRegistry(
  name: string,
  peers: (RegistryPeer & { address: string })[] = [],
): Promise<Registry> {
  const key = generateKeyPair();
  const store: Store<RegistryTables & NonceStoreTables> = await openStore({
    dataDir: scratch,
    fileName: `${name}.sqlite`,
    migrations: { ...nonceStoreMigrations, ...registryMigrations },
  });
  const directory = createDirectory({ store, powDifficulty: POW });
  const bound: { metagraph?: Metagraph } = {};
  const server = await startServiceServer({
    service: `registry-${name}`,
    logger,
    host: "127.0.0.1",
    port: 0,
    limits,
    shutdownGraceMs: 100,
    files: [MetagraphService.file],
    routes: (router) =>
      router.service(
        MetagraphService,
        createMetagraphService({
          get metagraph() {
            if (bound.metagraph === undefined) throw new Error("not bound yet");
            return bound.metagraph;
          },
        }),
      ),
    interceptors: [
      createVerifyingInterceptor({ selfAddress: key.address, nonceStore: createNonceStore(store) }),
    ],
  });
  const metagraph = createMetagraph({
    directory,
    selfAddress: key.address,
    selfUrl: server.url,
    bootstrapPeers: peers,
  });
  bound.metagraph = metagraph;
  await directory.acceptRecord(
    await sealRegistryRecord({ keyPair: key, publicUrl: server.url, powDifficulty: POW }),
  );
  const caller = createGossipCaller({ keyPair: key });
  const loop = createGossipLoop({ metagraph, call: caller.call, intervalMs: 20, timeoutMs: 5000 });
  closers.push(async () => {
    await loop.close();
    caller.close();
    await server.close();
    await store.close();
  });
  return { key, directory, metagraph, server, loop };
}

async function computeNode(key: KeyPair, sequence = 1n, name = "node"): Promise<NodeRecord> {
  return sealNodeRecord(
    create(NodeRecordSchema, {
      protocolVersion: PROTOCOL_VERSION,
      nodeType: NodeType.COMPUTE,
      name,
      pricePerHour: "1000",
      sequence,
      issuedAt: timestampFromDate(new Date()),
    }),
    key,
    POW,
  );
}

async function addresses(directory: Directory): Promise<string[]> {
  return (await directory.allRecords()).map((r) => r.address).sort();
}

function gossipClient(key: KeyPair, registry: Registry) {
  const session = new Http2SessionManager(registry.server.url);
  closers.push(() => session.abort());
  return createClient(
    MetagraphService,
    createConnectTransport({
      baseUrl: registry.server.url,
      httpVersion: "2",
      sessionManager: session,
      interceptors: [createSigningInterceptor({ keyPair: key, target: registry.key.address })],
    }),
  );
}

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "metagraph-"));
});

after(async () => {
  for (const close of closers.reverse()) await close();
  await rm(scratch, { recursive: true, force: true });
});

describe("metagraph gossip between two registries", () => {
  test("two registries started apart converge, in both directions, and the newest record wins", async () => {
    const b = await startRegistry("b1");
    const a = await startRegistry("a1", [{ url: b.server.url, address: b.key.address }]);
    const [n1, n2, n3] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
    await a.directory.acceptRecord(await computeNode(n1));
    await a.directory.acceptRecord(await computeNode(n2));
    await b.directory.acceptRecord(await computeNode(n3));
    assert.notDeepEqual(await addresses(a.directory), await addresses(b.directory));

    const round = await a.loop.runOnce();
    assert.deepEqual(
      { called: round.called, answered: round.answered, failed: round.failed },
      { called: 1, answered: 1, failed: [] },
    );
    const expected = [a.key, b.key, n1, n2, n3].map((k) => k.address).sort();
    assert.deepEqual(await addresses(a.directory), expected);
    assert.deepEqual(await addresses(b.directory), expected);

    // B was never told about A: it learned A's URL from the exchange and A's address from A's
    // signed registry record, so it can gossip back.
    assert.deepEqual(await b.metagraph.peers(), [{ url: a.server.url, address: a.key.address }]);
    await b.directory.acceptRecord(await computeNode(n1, 5n, "n1-updated"));
    const back = await b.loop.runOnce();
    assert.equal(back.answered, 1);
    assert.equal((await a.directory.getEntry(n1.address))?.record?.name, "n1-updated");

    // An older record of n1 does not bring the old one back.
    await a.directory.acceptRecord(await computeNode(n1, 3n, "n1-old")).catch(() => "stale");
    await a.loop.runOnce();
    assert.equal((await b.directory.getEntry(n1.address))?.record?.name, "n1-updated");
    assert.equal((await a.directory.getEntry(n1.address))?.record?.name, "n1-updated");
  });

  test("a started loop converges on its own", async () => {
    const b = await startRegistry("b2");
    const a = await startRegistry("a2", [{ url: b.server.url, address: b.key.address }]);
    const node = generateKeyPair();
    await b.directory.acceptRecord(await computeNode(node));
    a.loop.start();
    b.loop.start();
    for (let i = 0; i < 500 && (await a.directory.getEntry(node.address)) === undefined; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(await a.directory.getEntry(node.address), "A learned B's node");
    assert.equal(a.loop.state, "running");
    await a.loop.close();
    await a.loop.close();
    assert.equal(a.loop.state, "closed");
  });

  test("invalid records are dropped one by one, the call succeeds, the sender counts as misbehaving", async () => {
    const b = await startRegistry("b3");
    const c = generateKeyPair();
    const introduction = await sealRegistryRecord({
      keyPair: c,
      publicUrl: "http://c.invalid:1",
      powDifficulty: POW,
    });
    const good = generateKeyPair();
    const forged = { ...(await computeNode(generateKeyPair())), name: "renamed after signing" };
    const weak = await sealNodeRecord(
      create(NodeRecordSchema, {
        protocolVersion: PROTOCOL_VERSION,
        nodeType: NodeType.COMPUTE,
        sequence: 1n,
      }),
      generateKeyPair(),
      0,
    );
    const response = await gossipClient(c, b).gossip({
      protocolVersion: PROTOCOL_VERSION,
      peers: ["http://c.invalid:1"],
      nodeRecords: [introduction, forged, weak, await computeNode(good)],
    });
    assert.ok(response.nodeRecords.some((r) => r.address === b.key.address));
    assert.deepEqual(await addresses(b.directory), [b.key.address, c.address, good.address].sort());
    assert.equal(b.metagraph.misbehaviour().get(c.address), 2);
  });

  test("callers that are not registries, other major versions, oversized and unsigned messages are refused", async () => {
    const b = await startRegistry("b4");
    const stranger = generateKeyPair();
    const client = gossipClient(stranger, b);
    const code = async (promise: Promise<unknown>) =>
      Code[
        (
          await promise.then(
            () => assert.fail("accepted"),
            (e: unknown) => ConnectError.from(e),
          )
        ).code
      ];

    assert.equal(
      await code(client.gossip({ protocolVersion: PROTOCOL_VERSION, peers: [], nodeRecords: [] })),
      "PermissionDenied",
    );
    // A compute node's record is no introduction: only registries gossip.
    assert.equal(
      await code(
        client.gossip({
          protocolVersion: PROTOCOL_VERSION,
          nodeRecords: [await computeNode(stranger)],
        }),
      ),
      "PermissionDenied",
    );
    assert.equal(
      await code(client.gossip({ protocolVersion: { major: 2, minor: 0, patch: 0 } })),
      "FailedPrecondition",
    );
    const many = Array.from({ length: 257 }, (_, i) => `http://peer-${i}:1`);
    assert.equal(
      await code(client.gossip({ protocolVersion: PROTOCOL_VERSION, peers: many })),
      "ResourceExhausted",
    );

    const session = new Http2SessionManager(b.server.url);
    closers.push(() => session.abort());
    const unsigned = createClient(
      MetagraphService,
      createConnectTransport({ baseUrl: b.server.url, httpVersion: "2", sessionManager: session }),
    );
    assert.equal(
      await code(unsigned.gossip({ protocolVersion: PROTOCOL_VERSION })),
      "Unauthenticated",
    );
  });
});
