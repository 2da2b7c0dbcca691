import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { JobPriority } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { SchedulerInputError } from "./errors.js";
import { maxPricePerHourFor } from "./job-requirements.js";
import { createScheduler, type NoPlacement, type Placement, type Scheduler } from "./scheduler.js";
import { cuda, GiB, testJob, testNode } from "./test-fixtures.js";

function placed(result: Placement | NoPlacement): Placement {
  if (!result.placed) assert.fail(`expected a placement, got: ${result.reason}`);
  return result;
}

function refused(result: Placement | NoPlacement): NoPlacement {
  if (result.placed) assert.fail(`expected no placement, got node ${result.address}`);
  return result;
}

function withNodes(...nodes: Parameters<Scheduler["upsertNode"]>[0][]): Scheduler {
  const scheduler = createScheduler();
  for (const node of nodes) scheduler.upsertNode(node);
  return scheduler;
}

describe("eligibility", () => {
  test("a CUDA job goes to the node with a CUDA device and reserves that device's memory", () => {
    const scheduler = withNodes(
      testNode("cpu-only", { reputation: 1 }),
      testNode("gpu", { devices: [cuda(24n)] }),
    );
    const placement = placed(
      scheduler.place(testJob("j1", { device: DeviceType.CUDA, memoryBytes: 10n * GiB })),
    );
    assert.equal(placement.address, "gpu");
    assert.equal(placement.deviceType, DeviceType.CUDA);
    assert.equal(placement.deviceIndex, 0);
    assert.equal(scheduler.node("gpu")?.devices[0]?.reservedBytes, 10n * GiB);
    assert.equal(scheduler.node("gpu")?.ramReservedBytes, 0n);
  });

  test("host jobs (UNSPECIFIED or CPU) run on any node and reserve RAM", () => {
    const scheduler = withNodes(testNode("gpu", { devices: [cuda(24n)] }));
    const cpu = placed(scheduler.place(testJob("cpu", { device: DeviceType.CPU })));
    const any = placed(scheduler.place(testJob("any", { device: DeviceType.UNSPECIFIED })));
    assert.equal(cpu.deviceIndex, -1);
    assert.equal(any.address, "gpu");
    assert.equal(scheduler.node("gpu")?.ramReservedBytes, 2n * GiB);
  });

  test("a node without the job's memory free is passed over", () => {
    const scheduler = withNodes(
      testNode("small", { ramAvailableBytes: 8n * GiB, reputation: 1 }),
      testNode("large", { ramAvailableBytes: 32n * GiB }),
    );
    assert.equal(
      placed(scheduler.place(testJob("j", { memoryBytes: 16n * GiB }))).address,
      "large",
    );
  });

  test("the runtime must be offered; an empty runtime accepts any", () => {
    const scheduler = withNodes(
      testNode("onnx", { reputation: 1 }),
      testNode("tfjs", { runtimes: ["tfjs"] }),
    );
    assert.equal(placed(scheduler.place(testJob("t", { runtime: "tfjs" }))).address, "tfjs");
    assert.equal(placed(scheduler.place(testJob("any", { runtime: "" }))).address, "onnx");
  });

  test("a node priced above what the payment covers for the duration is not chosen", () => {
    // 1000 base units for 30 minutes covers at most 2000 per hour.
    const maxPricePerHour = maxPricePerHourFor(1000n, 1_800_000);
    assert.equal(maxPricePerHour, 2000n);
    const scheduler = withNodes(
      testNode("dear", { pricePerHour: 2001n, reputation: 1 }),
      testNode("exact", { pricePerHour: 2000n }),
    );
    const job = testJob("j", { maxPricePerHour, paymentAmount: 1000n, durationMs: 1_800_000 });
    const placement = placed(scheduler.place(job));
    assert.equal(placement.address, "exact");
    assert.equal(placement.estimatedCost, 1000n);
  });

  test("min_reputation excludes less reputable nodes", () => {
    const scheduler = withNodes(
      testNode("low", { reputation: 0.6, uptimeRatio: 1, pricePerHour: 0n }),
      testNode("high", { reputation: 0.9, uptimeRatio: 0 }),
    );
    assert.equal(placed(scheduler.place(testJob("j", { minReputation: 0.8 }))).address, "high");
  });

  test("direct access needs a reachable node", () => {
    const scheduler = withNodes(
      testNode("nat", { reachable: false, reputation: 1 }),
      testNode("public", { reachable: true }),
    );
    assert.equal(placed(scheduler.place(testJob("j", { directAccess: true }))).address, "public");
  });

  test("offline, banned and removed nodes get no jobs", () => {
    const scheduler = withNodes(
      testNode("a", { reputation: 0.9 }),
      testNode("b", { reputation: 0.8, banned: true }),
      testNode("c", { reputation: 0.7 }),
    );
    assert.equal(scheduler.setOnline("a", false), true);
    assert.equal(placed(scheduler.place(testJob("1"))).address, "c");
    assert.equal(scheduler.removeNode("c"), true);
    assert.equal(scheduler.removeNode("c"), false);
    assert.equal(scheduler.setOnline("c", true), false);
    refused(scheduler.place(testJob("2")));
    scheduler.setOnline("a", true);
    assert.equal(placed(scheduler.place(testJob("3"))).address, "a");
  });

  test("a node gets a job once; the same job id can go to another node (federated rounds)", () => {
    const scheduler = withNodes(testNode("a", { reputation: 0.9 }), testNode("b"));
    assert.equal(placed(scheduler.place(testJob("fed"))).address, "a");
    assert.equal(placed(scheduler.place(testJob("fed"))).address, "b");
    const third = refused(scheduler.place(testJob("fed")));
    assert.equal(third.reason, "every suitable online node already holds job fed");
  });

  test("only and exclude restrict the nodes one placement may use", () => {
    const scheduler = withNodes(
      testNode("a", { reputation: 0.9 }),
      testNode("b", { reputation: 0.8 }),
      testNode("c", { reputation: 0.3 }),
    );
    assert.equal(placed(scheduler.place(testJob("1"), { exclude: ["a"] })).address, "b");
    assert.equal(placed(scheduler.place(testJob("2"), { only: ["c", "b"] })).address, "b");
    const none = refused(scheduler.place(testJob("3"), { only: ["zzz"] }));
    assert.match(none.reason, /none of the 3 online nodes is one this job may use/);
    const excluded = refused(scheduler.place(testJob("4"), { exclude: ["a", "b", "c"] }));
    assert.equal(excluded.reason, none.reason);
    const tfjs = refused(scheduler.place(testJob("5", { runtime: "tfjs" }), { exclude: ["a"] }));
    assert.equal(tfjs.reason, "no online node offers runtime tfjs");
  });
});

describe("capacity", () => {
  test("slots: a node takes at most maxConcurrentJobs; release gives the slot back", () => {
    const scheduler = withNodes(testNode("n", { maxConcurrentJobs: 2 }));
    placed(scheduler.place(testJob("1", { memoryBytes: 0n })));
    placed(scheduler.place(testJob("2", { memoryBytes: 0n })));
    const full = refused(scheduler.place(testJob("3", { memoryBytes: 0n })));
    assert.equal(full.busy, true);
    assert.equal(
      full.reason,
      "every online node that can run the job is busy right now (no free slot)",
    );
    assert.equal(scheduler.release("n", "1"), true);
    assert.equal(scheduler.release("n", "1"), false);
    assert.equal(scheduler.release("nobody", "2"), false);
    assert.equal(placed(scheduler.place(testJob("3", { memoryBytes: 0n }))).address, "n");
    assert.equal(scheduler.stats().reservations, 2);
  });

  test("memory: reservations never exceed what the node offers; release restores it", () => {
    const scheduler = withNodes(
      testNode("gpu", { devices: [cuda(24n)], maxConcurrentJobs: 8, ramAvailableBytes: 4n * GiB }),
    );
    const job = (id: string) => testJob(id, { device: DeviceType.CUDA, memoryBytes: 10n * GiB });
    placed(scheduler.place(job("1")));
    placed(scheduler.place(job("2")));
    const third = refused(scheduler.place(job("3")));
    assert.equal(third.busy, true);
    assert.equal(
      third.reason,
      "every online node that can run the job is busy right now (no free slot, or less than 10 GiB of CUDA memory free)",
    );
    assert.equal(scheduler.node("gpu")?.devices[0]?.reservedBytes, 20n * GiB);
    scheduler.release("gpu", "1");
    assert.equal(scheduler.node("gpu")?.devices[0]?.reservedBytes, 10n * GiB);
    placed(scheduler.place(job("3")));
  });

  test("a device job is packed onto the device with the least free memory that fits", () => {
    const scheduler = withNodes(
      testNode("gpu", { devices: [cuda(40n), cuda(12n)], maxConcurrentJobs: 4 }),
    );
    const small = placed(
      scheduler.place(testJob("small", { device: DeviceType.CUDA, memoryBytes: 10n * GiB })),
    );
    assert.equal(small.deviceIndex, 1);
    const big = placed(
      scheduler.place(testJob("big", { device: DeviceType.CUDA, memoryBytes: 40n * GiB })),
    );
    assert.equal(big.deviceIndex, 0);
  });

  test("a smaller offer leaves a node full instead of over-committed", () => {
    const scheduler = withNodes(
      testNode("n", { ramAvailableBytes: 16n * GiB, maxConcurrentJobs: 4 }),
    );
    placed(scheduler.place(testJob("1", { memoryBytes: 12n * GiB })));
    scheduler.upsertNode(testNode("n", { ramAvailableBytes: 8n * GiB, maxConcurrentJobs: 4 }));
    const next = refused(scheduler.place(testJob("2", { memoryBytes: 1n * GiB })));
    assert.equal(next.busy, true);
    scheduler.release("n", "1");
    placed(scheduler.place(testJob("2", { memoryBytes: 1n * GiB })));
  });

  test("jobs the node reports running are not counted twice, and foreign ones take slots", () => {
    const scheduler = withNodes(
      testNode("n", { ramAvailableBytes: 16n * GiB, maxConcurrentJobs: 3 }),
    );
    placed(scheduler.place(testJob("mine", { memoryBytes: 8n * GiB })));
    // The node starts it, and also runs a job leased by another replica (2 GiB): 6 GiB are left.
    scheduler.upsertNode(
      testNode("n", {
        ramAvailableBytes: 6n * GiB,
        maxConcurrentJobs: 3,
        runningJobIds: ["mine", "foreign"],
      }),
    );
    const state = scheduler.node("n");
    assert.equal(state?.usedSlots, 2);
    assert.equal(state?.ramReservedBytes, 0n);
    placed(scheduler.place(testJob("fits", { memoryBytes: 6n * GiB })));
    const full = refused(scheduler.place(testJob("more", { memoryBytes: 0n })));
    assert.match(full.reason, /no free slot/);
  });
});

describe("reasons for no placement", () => {
  test("no node at all, and none online", () => {
    assert.equal(
      refused(createScheduler().place(testJob("j"))).reason,
      "no compute node is registered",
    );
    const scheduler = withNodes(testNode("a", { online: false }), testNode("b", { online: false }));
    const result = refused(scheduler.place(testJob("j")));
    assert.equal(result.reason, "none of the 2 registered nodes is online");
    assert.equal(result.busy, false);
  });

  test("missing runtime", () => {
    const scheduler = withNodes(testNode("a"), testNode("b"));
    assert.equal(
      refused(scheduler.place(testJob("j", { runtime: "tfjs" }))).reason,
      "no online node offers runtime tfjs",
    );
  });

  test("missing device", () => {
    const scheduler = withNodes(testNode("a"));
    assert.equal(
      refused(scheduler.place(testJob("j", { device: DeviceType.ROCM }))).reason,
      "no online node has a ROCm device",
    );
  });

  test("device present but never enough memory", () => {
    const scheduler = withNodes(
      testNode("a", { devices: [cuda(8n)] }),
      testNode("b", { devices: [cuda(6n)] }),
    );
    const result = refused(
      scheduler.place(testJob("j", { device: DeviceType.CUDA, memoryBytes: 16n * GiB })),
    );
    assert.equal(
      result.reason,
      "2 online nodes have a CUDA device and runtime onnxruntime but none has 16 GiB of CUDA memory (the largest offers 8 GiB)",
    );
    assert.equal(result.busy, false);
  });

  test("reputation, price and direct access", () => {
    const scheduler = withNodes(
      testNode("a", { reputation: 0.7, pricePerHour: 5000n, reachable: false }),
    );
    assert.equal(
      refused(scheduler.place(testJob("r", { minReputation: 0.9 }))).reason,
      "1 online node offers runtime onnxruntime but none has reputation >= 0.9 (the best has 0.7)",
    );
    assert.equal(
      refused(
        scheduler.place(
          testJob("p", { maxPricePerHour: 1000n, paymentAmount: 1000n, durationMs: 3_600_000 }),
        ),
      ).reason,
      "1 online node offers runtime onnxruntime but none asks at most 1000 base units per hour, the most a payment of 1000 covers for 1 h (the cheapest asks 5000)",
    );
    assert.equal(
      refused(scheduler.place(testJob("d", { directAccess: true }))).reason,
      "1 online node offers runtime onnxruntime but none is reachable for the direct access the job asked for",
    );
  });
});

describe("ranking", () => {
  // Each pair differs in one attribute; the better node registers second so order cannot decide.
  const cases: [
    string,
    Partial<Parameters<typeof testNode>[1]>,
    Partial<Parameters<typeof testNode>[1]>,
  ][] = [
    ["reputation", { reputation: 0.6 }, { reputation: 0.9 }],
    ["uptime", { uptimeRatio: 0.3 }, { uptimeRatio: 0.99 }],
    ["price", { pricePerHour: 3_000_000n }, { pricePerHour: 500_000n }],
  ];
  for (const [what, worse, better] of cases) {
    test(`prefers the node with better ${what}`, () => {
      const scheduler = withNodes(testNode("worse", worse), testNode("better", better));
      const placement = placed(scheduler.place(testJob("j", { memoryBytes: 4n * GiB })));
      assert.equal(placement.address, "better");
    });
  }

  test("prefers the node with a larger share of its slots free", () => {
    const scheduler = withNodes(
      testNode("busier", { maxConcurrentJobs: 4 }),
      testNode("idler", { maxConcurrentJobs: 4 }),
    );
    for (const id of ["b1", "b2"])
      placed(scheduler.place(testJob(id, { memoryBytes: 0n }), { only: ["busier"] }));
    placed(scheduler.place(testJob("i1", { memoryBytes: 0n }), { only: ["idler"] }));
    assert.equal(placed(scheduler.place(testJob("j", { memoryBytes: 0n }))).address, "idler");
  });

  test("prefers the node with a larger share of its memory free", () => {
    const scheduler = withNodes(
      testNode("fuller", { maxConcurrentJobs: 4 }),
      testNode("emptier", { maxConcurrentJobs: 4 }),
    );
    placed(scheduler.place(testJob("f", { memoryBytes: 12n * GiB }), { only: ["fuller"] }));
    placed(scheduler.place(testJob("e", { memoryBytes: 2n * GiB }), { only: ["emptier"] }));
    assert.equal(placed(scheduler.place(testJob("j"))).address, "emptier");
  });

  test("spreads jobs: after one placement the other idle node ranks first", () => {
    const scheduler = withNodes(
      testNode("a", { maxConcurrentJobs: 4, ramAvailableBytes: 32n * GiB }),
      testNode("b", { maxConcurrentJobs: 4, ramAvailableBytes: 32n * GiB }),
    );
    const first = placed(scheduler.place(testJob("1", { memoryBytes: 8n * GiB })));
    const second = placed(scheduler.place(testJob("2", { memoryBytes: 8n * GiB })));
    assert.notEqual(first.address, second.address);
  });

  test("weights are configurable: price alone decides when it is the only weight", () => {
    const scheduler = createScheduler({
      weights: { reputation: 0, freeCapacity: 0, uptime: 0, price: 1 },
    });
    scheduler.upsertNode(testNode("cheap", { pricePerHour: 10n, reputation: 0 }));
    scheduler.upsertNode(testNode("famous", { pricePerHour: 20n, reputation: 1 }));
    assert.equal(placed(scheduler.place(testJob("j"))).address, "cheap");
    assert.throws(() => createScheduler({ weights: { price: -1 } }), SchedulerInputError);
  });
});

describe("placeForNode (pull)", () => {
  test("picks the highest priority, then the oldest job the node can run", () => {
    const scheduler = withNodes(testNode("n", { maxConcurrentJobs: 4 }));
    const candidates = [
      testJob("normal-old", {}, { priority: JobPriority.NORMAL, queuedAtMs: 1 }),
      testJob("high-new", {}, { priority: JobPriority.HIGH, queuedAtMs: 30 }),
      testJob("high-old", {}, { priority: JobPriority.HIGH, queuedAtMs: 20 }),
      testJob("critical-tfjs", { runtime: "tfjs" }, { priority: JobPriority.CRITICAL }),
      testJob("low", {}, { priority: JobPriority.LOW, queuedAtMs: 0 }),
    ];
    const picked = placed(scheduler.placeForNode("n", candidates));
    assert.equal(picked.jobId, "high-old");
    assert.equal(scheduler.node("n")?.reservations[0]?.jobId, "high-old");
    assert.equal(placed(scheduler.placeForNode("n", candidates.slice(1))).jobId, "high-new");
  });

  test("UNSPECIFIED priority counts as NORMAL", () => {
    const scheduler = withNodes(testNode("n"));
    const picked = placed(
      scheduler.placeForNode("n", [
        testJob("low", {}, { priority: JobPriority.LOW, queuedAtMs: 0 }),
        testJob("unspecified", {}, { priority: JobPriority.UNSPECIFIED, queuedAtMs: 5 }),
      ]),
    );
    assert.equal(picked.jobId, "unspecified");
  });

  test("says why nothing fits, and refuses a full, offline or unknown node", () => {
    const scheduler = withNodes(testNode("n", { maxConcurrentJobs: 1 }));
    const none = refused(
      scheduler.placeForNode("n", [
        testJob("a", { runtime: "tfjs" }),
        testJob("b", { runtime: "tfjs" }),
        testJob("c", { device: DeviceType.CUDA }),
        testJob("d", { memoryBytes: 64n * GiB }),
      ]),
    );
    assert.equal(
      none.reason,
      "none of the 4 queued jobs fits node n: 2 need runtime tfjs, 1 needs a CUDA device, 1 needs 64 GiB of RAM",
    );
    assert.equal(none.busy, false);
    placed(scheduler.placeForNode("n", [testJob("ok")]));
    const full = refused(scheduler.placeForNode("n", [testJob("next")]));
    assert.equal(full.reason, "node n has no free slot (1 of 1 in use)");
    assert.equal(full.busy, true);
    scheduler.setOnline("n", false);
    assert.equal(refused(scheduler.placeForNode("n", [])).reason, "node n is offline");
    assert.equal(refused(scheduler.placeForNode("x", [])).reason, "node x is not registered");
  });

  test("both directions share the reservations", () => {
    const scheduler = withNodes(testNode("n", { maxConcurrentJobs: 1 }));
    placed(scheduler.place(testJob("pushed")));
    refused(scheduler.placeForNode("n", [testJob("pulled")]));
    scheduler.release("n", "pushed");
    assert.equal(placed(scheduler.placeForNode("n", [testJob("pulled")])).jobId, "pulled");
  });
});

test("upsertNode rejects out-of-range fields naming them", () => {
  const scheduler = createScheduler();
  assert.throws(
    () => scheduler.upsertNode(testNode("n", { reputation: 1.5 })),
    (error: unknown) => error instanceof SchedulerInputError && error.field === "reputation",
  );
  assert.throws(
    () => scheduler.upsertNode(testNode("n", { maxConcurrentJobs: -1 })),
    (error: unknown) =>
      error instanceof SchedulerInputError && error.field === "max_concurrent_jobs",
  );
  assert.equal(scheduler.stats().nodes, 0);
});

test("an upsert that changes runtimes and devices moves the node between buckets", () => {
  const scheduler = withNodes(testNode("n"));
  refused(scheduler.place(testJob("t", { runtime: "tfjs", device: DeviceType.CUDA })));
  scheduler.upsertNode(testNode("n", { runtimes: ["tfjs"], devices: [cuda(8n)] }));
  placed(scheduler.place(testJob("t", { runtime: "tfjs", device: DeviceType.CUDA })));
  refused(scheduler.place(testJob("o")));
});

test("a bucket grows past its initial size", () => {
  const scheduler = createScheduler();
  for (let i = 0; i < 100; i++) {
    scheduler.upsertNode(testNode(`n${i}`, { reputation: i / 100, maxConcurrentJobs: 1 }));
  }
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) seen.add(placed(scheduler.place(testJob(`j${i}`))).address);
  assert.equal(seen.size, 100);
  assert.equal(placed(createSchedulerWith100().place(testJob("x"))).address, "n99");
  refused(scheduler.place(testJob("overflow")));
});

function createSchedulerWith100(): Scheduler {
  const scheduler = createScheduler();
  for (let i = 0; i < 100; i++) scheduler.upsertNode(testNode(`n${i}`, { reputation: i / 100 }));
  return scheduler;
}
