import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { createClosableGrpcTransport } from "@tessera/testkit/grpc-clients";
import { loggedAddress, type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";
import { standaloneServiceSuite } from "@tessera/testkit/standalone-service-suite";
import { registryServicesByRole } from "./server.js";
import { PROTOCOL_VERSION } from "./validation/protocol-version.js";

const entry = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const dataDir = await mkdtemp(join(tmpdir(), "registry-main-"));
after(() => rm(dataDir, { recursive: true, force: true }));
// A low proof-of-work difficulty keeps start-up fast; the rule itself is tested in the directory.
const common = { POW_DIFFICULTY: "4", GOSSIP_INTERVAL_MS: "600000" };

describe("registry binary in the registry role", () => {
  standaloneServiceSuite({
    entry,
    env: { ...common, DATA_DIR: join(dataDir, "suite") },
    services: registryServicesByRole.registry,
    expectUnimplemented: false,
  });
});

describe("a validator process registers itself with a running registry", () => {
  let registry: SpawnedService;
  let validator: SpawnedService;
  before(async () => {
    registry = await spawnService({
      entry,
      env: { ...common, DATA_DIR: join(dataDir, "registry") },
    });
    const registryAddress = loggedAddress(registry);
    validator = await spawnService({
      entry,
      env: {
        ...common,
        REGISTRY_ROLE: "validator",
        DATA_DIR: join(dataDir, "validator"),
        REGISTRY_URL: registry.url,
        TRUSTED_REGISTRIES: registryAddress,
        TREASURY_ADDRESS: registryAddress,
      },
    });
  });
  after(async () => {
    await validator?.stop();
    await registry?.stop();
  });

  test("the registry lists the validator at its endpoint", async () => {
    const { transport, close } = createClosableGrpcTransport(registry.url);
    try {
      const client = createClient(RegistryService, transport);
      const { validators } = await client.listValidators({ protocolVersion: PROTOCOL_VERSION });
      assert.deepEqual(
        validators.map((v) => [v.address, v.endpoint?.url]),
        [[loggedAddress(validator), validator.url]],
      );
    } finally {
      close();
    }
  });

  test("a validator without a trusted registry refuses to start, naming the variable", async () => {
    await assert.rejects(
      spawnService({
        entry,
        env: { ...common, REGISTRY_ROLE: "validator", DATA_DIR: join(dataDir, "lonely") },
      }),
      /TRUSTED_REGISTRIES/,
    );
  });
});
