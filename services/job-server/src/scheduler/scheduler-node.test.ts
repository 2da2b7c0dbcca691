import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  DeviceType,
  NodeLoadSchema,
  type NodeRecord,
  NodeRecordSchema,
  NodeStandingSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { SchedulerInputError } from "./errors.js";
import { schedulerNodeFrom } from "./scheduler-node.js";
import { GiB } from "./test-fixtures.js";

const NOW = new Date("2025-06-01T12:00:00Z");

interface RecordFields {
  endpoint?: { host: string };
  maxConcurrentJobs?: number;
  pricePerHour?: string;
}

function record(fields: RecordFields = {}): NodeRecord {
  return create(NodeRecordSchema, {
    address: "tsr1node",
    devices: [
      { deviceType: DeviceType.CPU, totalMemoryBytes: 64n * GiB },
      { deviceType: DeviceType.CUDA, totalMemoryBytes: 24n * GiB, availableMemoryBytes: 20n * GiB },
    ],
    ramTotalBytes: 64n * GiB,
    runtimes: ["onnxruntime", "tfjs"],
    pricePerHour: "1500000",
    maxConcurrentJobs: 4,
    endpoint: { host: "10.0.0.7", port: 7000 },
    ...fields,
  });
}

test("from a record and standing alone: the record's offer", () => {
  const standing = create(NodeStandingSchema, { reputation: 0.8, uptimeRatio: 0.95, online: true });
  const node = schedulerNodeFrom(record(), standing, undefined, { now: NOW });
  assert.deepEqual(node, {
    address: "tsr1node",
    devices: [
      { deviceType: DeviceType.CPU, memoryBytes: 64n * GiB },
      { deviceType: DeviceType.CUDA, memoryBytes: 20n * GiB },
    ],
    ramAvailableBytes: 64n * GiB,
    runtimes: ["onnxruntime", "tfjs"],
    pricePerHour: 1_500_000n,
    reputation: 0.8,
    uptimeRatio: 0.95,
    maxConcurrentJobs: 4,
    banned: false,
    online: true,
    reachable: true,
    runningJobIds: [],
  });
});

test("with a load: live memory, running jobs, and no more slots than the node accepts", () => {
  const load = create(NodeLoadSchema, {
    ramAvailableBytes: 10n * GiB,
    devices: [{ deviceType: DeviceType.CUDA, availableMemoryBytes: 3n * GiB }],
    activeJobIds: ["a"],
    freeSlots: 1,
  });
  const node = schedulerNodeFrom(record(), undefined, load, { now: NOW });
  assert.equal(node.ramAvailableBytes, 10n * GiB);
  assert.deepEqual(node.devices, [{ deviceType: DeviceType.CUDA, memoryBytes: 3n * GiB }]);
  assert.deepEqual(node.runningJobIds, ["a"]);
  assert.equal(node.maxConcurrentJobs, 2);
  assert.equal(node.reputation, 0.5, "a node without standing starts at 0.5");
});

test("banned while banned_until is ahead; unreachable without endpoint; 0 slots count as 1", () => {
  const standing = create(NodeStandingSchema, {
    online: true,
    bannedUntil: timestampFromDate(new Date(NOW.getTime() + 60_000)),
  });
  const node = schedulerNodeFrom(
    record({ endpoint: { host: "" }, maxConcurrentJobs: 0 }),
    standing,
    undefined,
    { now: NOW },
  );
  assert.equal(node.banned, true);
  assert.equal(node.reachable, false);
  assert.equal(node.maxConcurrentJobs, 1);
  const later = schedulerNodeFrom(record(), standing, undefined, {
    now: new Date(NOW.getTime() + 120_000),
  });
  assert.equal(later.banned, false);
});

test("a price that is not a decimal amount is rejected", () => {
  assert.throws(
    () => schedulerNodeFrom(record({ pricePerHour: "-5" }), undefined),
    (error: unknown) => error instanceof SchedulerInputError && error.field === "price_per_hour",
  );
});
