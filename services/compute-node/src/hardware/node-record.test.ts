import assert from "node:assert/strict";
import { test } from "node:test";
import { generateKeyPair } from "@tessera/identity/keys";
import {
  findNodeRecordProblem,
  verifyNodeRecord,
  verifyNodeRecordPow,
} from "@tessera/identity/node-record";
import { DeviceType, NodeType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { Hardware } from "./hardware.js";
import { type NodeOffer, sealComputeNodeRecord } from "./node-record.js";

const GIB = 1024n ** 3n;

const hardware: Hardware = {
  cpuModel: "AMD EPYC 7B13",
  cpuCores: 16,
  ramTotalBytes: 64n * GIB,
  ramAvailableBytes: 60n * GIB,
  gpus: [
    {
      name: "NVIDIA A100-SXM4-40GB",
      totalMemoryBytes: 40n * GIB,
      freeMemoryBytes: 39n * GIB,
      driverVersion: "535.104.05",
    },
  ],
};

const offer: NodeOffer = {
  name: "rack-7",
  publicUrl: "http://node-7.example:7004/",
  region: "eu-west",
  maxConcurrentJobs: 3,
  maxModelSizeBytes: 2n * GIB,
  pricePerHour: 1_500_000n,
  payoutAddress: "",
  runtimes: ["onnxruntime", "tfjs", "tessera-data"],
  supportedFormats: ["onnx", "csv"],
  capabilities: ["training", "inference"],
};

test("a sealed record verifies: key, address, proof of work at the difficulty, signature", async () => {
  const keyPair = generateKeyPair();
  const record = await sealComputeNodeRecord({ hardware, offer, keyPair, powDifficulty: 12 });
  assert.equal(findNodeRecordProblem(record, { minPowDifficulty: 12 }), undefined);
  assert.ok(verifyNodeRecord(record));
  assert.ok(verifyNodeRecordPow(record, 12));
  assert.equal(record.address, keyPair.address);
  assert.equal(record.powDifficulty, 12);
});

test("the record describes the node's hardware, offer and price", async () => {
  const keyPair = generateKeyPair();
  const issuedAt = new Date("2025-03-01T12:00:00Z");
  const record = await sealComputeNodeRecord({
    hardware,
    offer,
    keyPair,
    powDifficulty: 4,
    issuedAt,
  });
  assert.equal(record.nodeType, NodeType.COMPUTE);
  assert.equal(record.name, "rack-7");
  assert.equal(record.cpuCores, 16);
  assert.equal(record.ramTotalBytes, 64n * GIB);
  assert.deepEqual(
    record.devices.map((d) => [d.deviceType, d.deviceName, d.totalMemoryBytes]),
    [
      [DeviceType.CPU, "AMD EPYC 7B13", 64n * GIB],
      [DeviceType.CUDA, "NVIDIA A100-SXM4-40GB", 40n * GIB],
    ],
  );
  assert.equal(record.devices[1]?.driverVersion, "535.104.05");
  assert.deepEqual(record.runtimes, ["onnxruntime", "tfjs", "tessera-data"]);
  assert.equal(record.pricePerHour, "1500000");
  assert.equal(record.maxConcurrentJobs, 3);
  // An empty payout address means the node's own.
  assert.equal(record.payoutAddress, keyPair.address);
  assert.equal(record.endpoint?.url, "http://node-7.example:7004");
  assert.equal(record.endpoint?.host, "node-7.example");
  assert.equal(record.endpoint?.port, 7004);
  assert.equal(record.sequence, BigInt(issuedAt.getTime()));
  assert.equal(record.protocolVersion?.major, 1);
});

test("a node behind NAT publishes no endpoint; changing a sealed field breaks the seal", async () => {
  const keyPair = generateKeyPair();
  const record = await sealComputeNodeRecord({
    hardware: { ...hardware, gpus: [] },
    offer: { ...offer, publicUrl: "" },
    keyPair,
    powDifficulty: 4,
  });
  assert.equal(record.endpoint, undefined);
  assert.equal(record.devices.length, 1);
  const cheaper = { ...record, pricePerHour: "1" };
  assert.equal(verifyNodeRecord(cheaper), false);
  assert.notEqual(findNodeRecordProblem(cheaper), undefined);
});
