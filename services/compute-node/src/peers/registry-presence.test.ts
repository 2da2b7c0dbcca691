/**
 * The node's registry entry against the real registry (its built binary, as its own process):
 * the registry accepts the node's sealed record and sees it online through its heartbeats.
 */
import assert from "node:assert/strict";
import { access, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { generateKeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { createLogger } from "@tessera/runtime";
import { type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";
import { buildNodeLoad } from "../agent/node-agent.js";
import { sealComputeNodeRecord } from "../hardware/node-record.js";
import { NODE_PROTOCOL_VERSION } from "../protocol-version.js";
import { startRegistryPresence } from "./registry-presence.js";
import { createSignedTransport } from "./signed-transport.js";

const registryEntry = fileURLToPath(new URL("../../../registry/dist/main.js", import.meta.url));
const logger = createLogger({ service: "compute-node", level: "silent" });

let dir: string;
let registry: SpawnedService;
let registryAddress: string;

before(async () => {
  // Another service's build output: turbo builds only this package's dependencies before its tests.
  await access(registryEntry).catch(() => {
    throw new Error(
      `${registryEntry} is missing: run \`pnpm --filter @tessera/registry build\` first`,
    );
  });
  dir = await mkdtemp(join(tmpdir(), "tessera-registry-presence-"));
  const { keyPair } = await loadOrCreateServiceKey({
    path: join(dir, "key.json"),
    name: "registry",
  });
  registryAddress = keyPair.address;
  registry = await spawnService({
    entry: registryEntry,
    env: {
      HOST: "127.0.0.1",
      REGISTRY_ROLE: "registry",
      DATA_DIR: dir,
      POW_DIFFICULTY: "8",
      HEARTBEAT_INTERVAL_MS: "50",
    },
  });
});

after(async () => {
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

test("the registry lists the node from its sealed record and sees it online", async () => {
  const keyPair = generateKeyPair();
  const record = await sealComputeNodeRecord({
    hardware: {
      cpuModel: "test CPU",
      cpuCores: 8,
      ramTotalBytes: 16n << 30n,
      ramAvailableBytes: 12n << 30n,
      gpus: [],
    },
    offer: {
      name: "presence-test",
      publicUrl: "",
      region: "test",
      maxConcurrentJobs: 2,
      maxModelSizeBytes: 1n << 30n,
      pricePerHour: 1000n,
      payoutAddress: "",
      runtimes: ["onnxruntime", "tfjs", "tessera-data"],
      supportedFormats: ["onnx", "csv"],
      capabilities: ["training", "inference"],
    },
    keyPair,
    powDifficulty: 8,
  });
  const connection = createSignedTransport({
    baseUrl: registry.url,
    target: registryAddress,
    keyPair,
    nonceSource: createNonceSource(),
  });
  const capacity = {
    maxConcurrentJobs: 2,
    memoryBudgetBytes: 8 << 30,
    defaultJobDurationMs: 60_000,
    runtimes: ["tfjs"],
    deviceTypes: [DeviceType.CPU],
  };
  let loads = 0;
  const presence = startRegistryPresence({
    registry: createClient(RegistryService, connection.transport),
    record,
    load: () => {
      loads++;
      return buildNodeLoad(
        capacity,
        { machineFreeBytes: 8 << 30, devices: [], cpuUtilization: 0.25 },
        [],
        true,
      );
    },
    logger,
  });
  const reader = createClient(RegistryService, connection.transport);
  try {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const { node } = await reader
        .getNode({ protocolVersion: NODE_PROTOCOL_VERSION, nodeAddress: keyPair.address })
        .catch(() => ({ node: undefined }));
      // Online once a heartbeat carried the node's load.
      if (node?.standing?.online === true && node.load !== undefined && loads > 0) {
        assert.equal(node.record?.name, "presence-test");
        assert.equal(node.record?.pricePerHour, "1000");
        assert.deepEqual(node.record?.runtimes, ["onnxruntime", "tfjs", "tessera-data"]);
        assert.equal(node.load.freeSlots, 2);
        break;
      }
      if (Date.now() > deadline) assert.fail("the registry never saw the node online");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await presence.close();
    connection.close();
  }
});
