import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SERVICES, serviceEnvironment, servicePort } from "./services.js";

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
});
