import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { addressVariables } from "./service-keys.js";
import {
  DEVNET_VALIDATOR_FUNDS,
  SERVICES,
  serviceEnvironment,
  serviceKeyFile,
  servicePort,
} from "./services.js";

const network = {
  host: "127.0.0.1",
  portBase: 7000,
  dataDir: "/data",
  logLevel: "info",
  logFormat: "json" as const,
  shutdownGraceMs: 10_000,
};

describe("the service table", () => {
  test("uses the documented default ports", () => {
    const ports = Object.fromEntries(SERVICES.map((s) => [s.name, servicePort(s, 7000)]));
    assert.deepEqual(ports, {
      "job-server": 7001,
      gateway: 7002,
      registry: 7003,
      "compute-node": 7004,
      wallet: 7005,
      "validator-1": 7006,
      "validator-2": 7007,
      "validator-3": 7008,
      "compute-node-2": 7009,
    });
  });

  test("starts every service after the peers it calls", () => {
    const started = new Set<string>();
    for (const service of SERVICES) {
      for (const peer of service.peers) {
        assert.ok(started.has(peer), `${service.name} starts before its peer ${peer}`);
      }
      started.add(service.name);
    }
  });

  test("gives each service its port, data dir and its peers' URLs", () => {
    const computeNode = SERVICES.find((s) => s.name === "compute-node");
    assert.ok(computeNode);
    const env = serviceEnvironment(computeNode, { ...network, portBase: 8000 });
    assert.equal(env.PORT, "8004");
    assert.equal(env.DATA_DIR, "/data/compute-node");
    assert.equal(env.JOB_SERVER_URL, "http://127.0.0.1:8001");
    assert.equal(env.GATEWAY_URL, "http://127.0.0.1:8002");
    assert.equal(env.REGISTRY_URL, "http://127.0.0.1:8003");
  });

  test("runs the registry in its registry role", () => {
    const registry = SERVICES.find((s) => s.name === "registry");
    assert.ok(registry);
    assert.equal(serviceEnvironment(registry, network).REGISTRY_ROLE, "registry");
  });

  test("funds the validators at genesis so they can lock a stake of at least the registry's minimum", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "devnet-keys-"));
    try {
      const byName = (name: string) => {
        const service = SERVICES.find((s) => s.name === name);
        assert.ok(service, name);
        return service;
      };
      const addressOf = async (name: string) =>
        (await loadOrCreateServiceKey({ path: serviceKeyFile(byName(name), dataDir), name }))
          .keyPair.address;
      const wallet = await addressVariables(byName("wallet"), SERVICES, dataDir);
      const validators = SERVICES.filter((s) => s.env.REGISTRY_ROLE === "validator");
      assert.equal(validators.length, 3);
      const funded = await Promise.all(
        validators.map(async (v) => `${await addressOf(v.name)}=${DEVNET_VALIDATOR_FUNDS}`),
      );
      assert.deepEqual(wallet.GENESIS?.split(","), funded);
      assert.equal(wallet.READERS, await addressOf("registry"));

      const walletAddress = await addressOf("wallet");
      const minimum = BigInt(byName("registry").env.VALIDATOR_MIN_STAKE ?? "0");
      assert.ok(minimum > 0n, "the devnet registry asks validators for a stake");
      assert.equal(
        (await addressVariables(byName("registry"), SERVICES, dataDir)).WALLET_ADDRESS,
        walletAddress,
      );
      for (const validator of validators) {
        const stake = BigInt(validator.env.VALIDATOR_STAKE ?? "0");
        assert.ok(stake >= minimum && stake <= DEVNET_VALIDATOR_FUNDS, validator.name);
        const env = await addressVariables(validator, SERVICES, dataDir);
        assert.equal(env.WALLET_ADDRESS, walletAddress);
        assert.ok(serviceEnvironment(validator, network).WALLET_URL, "validators reach the wallet");
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
