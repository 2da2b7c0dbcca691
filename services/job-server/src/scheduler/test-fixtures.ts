/**
 * Builders of scheduler nodes and jobs for tests (not used by production code).
 */
import { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { JobPriority } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { JobRequirements, SchedulerJob } from "./job-requirements.js";
import type { SchedulerNode } from "./scheduler-node.js";

/** One gibibyte. */
export const GiB = 1024n ** 3n;

/** A CPU-only node offering onnxruntime, 16 GiB RAM, 2 slots, price 1000/h, reputation 0.5. */
export function testNode(address: string, overrides: Partial<SchedulerNode> = {}): SchedulerNode {
  return {
    address,
    devices: [{ deviceType: DeviceType.CPU, memoryBytes: 16n * GiB }],
    ramAvailableBytes: 16n * GiB,
    runtimes: ["onnxruntime"],
    pricePerHour: 1000n,
    reputation: 0.5,
    uptimeRatio: 0.5,
    maxConcurrentJobs: 2,
    reachable: true,
    ...overrides,
  };
}

/** A CUDA device with `gib` GiB of memory. */
export function cuda(gib: bigint): { deviceType: DeviceType; memoryBytes: bigint } {
  return { deviceType: DeviceType.CUDA, memoryBytes: gib * GiB };
}

/**
 * A NORMAL-priority job needing 1 GiB of host RAM and onnxruntime, no price limit, queued at
 * `queuedAtMs` (default 0).
 */
export function testJob(
  jobId: string,
  overrides: Partial<JobRequirements> = {},
  extra: { priority?: JobPriority; queuedAtMs?: number } = {},
): SchedulerJob {
  return {
    jobId,
    requirements: {
      device: DeviceType.UNSPECIFIED,
      memoryBytes: GiB,
      runtime: "onnxruntime",
      maxPricePerHour: undefined,
      paymentAmount: undefined,
      durationMs: 3_600_000,
      minReputation: 0,
      directAccess: false,
      ...overrides,
    },
    priority: extra.priority ?? JobPriority.NORMAL,
    queuedAtMs: extra.queuedAtMs ?? 0,
  };
}

/** A seeded pseudo-random generator (mulberry32) returning floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
