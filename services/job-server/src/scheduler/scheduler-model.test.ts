/**
 * Property test: random placements, releases, pulls, node updates and outages against a brute-force
 * model that keeps its own books. After every step no node holds more jobs than its slots or more
 * memory than it offers, and every placement is the best the model can find (same score), every
 * refusal one the model agrees with.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { JobPriority } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { describeVerdict, type Verdict } from "./explain.js";
import type { SchedulerJob } from "./job-requirements.js";
import { poolOf } from "./pools.js";
import { createScheduler } from "./scheduler.js";
import type { SchedulerNode } from "./scheduler-node.js";
import { GiB, seededRandom, testJob } from "./test-fixtures.js";

const RUNTIMES = ["onnxruntime", "tfjs", "tessera-data"];
const JOB_DEVICES = [
  DeviceType.UNSPECIFIED,
  DeviceType.CPU,
  DeviceType.CUDA,
  DeviceType.ROCM,
  DeviceType.METAL,
];
const GPU_KINDS = [DeviceType.CUDA, DeviceType.ROCM];
const EPSILON = 1e-9;

interface Held {
  readonly jobId: string;
  readonly deviceIndex: number;
  readonly memory: bigint;
}

/** The model's books for one node. */
interface ModelNode {
  spec: SchedulerNode;
  online: boolean;
  held: Held[];
}

function modelScore(node: ModelNode, device: DeviceType): number {
  const spec = node.spec;
  const slots = (spec.maxConcurrentJobs - node.held.length) / spec.maxConcurrentJobs;
  let capacity = 0n;
  let used = 0n;
  if (device === DeviceType.UNSPECIFIED || device === DeviceType.CPU) {
    capacity = spec.ramAvailableBytes;
    for (const h of node.held) if (h.deviceIndex < 0) used += h.memory;
  } else {
    spec.devices.forEach((d, i) => {
      if (d.deviceType !== device) return;
      capacity += d.memoryBytes;
      for (const h of node.held) if (h.deviceIndex === i) used += h.memory;
    });
  }
  const memory = capacity > 0n ? Number(capacity - used) / Number(capacity) : 0;
  const price = Number(spec.pricePerHour);
  const priceTerm = price === 0 ? 1 : 1_000_000 / (1_000_000 + price);
  return (
    0.4 * spec.reputation +
    0.25 * ((slots + memory) / 2) +
    0.2 * spec.uptimeRatio +
    0.15 * priceTerm
  );
}

/** Whether `job` fits `node` now, by the documented rules, from the model's own books. */
function modelFits(node: ModelNode, job: SchedulerJob): boolean {
  const spec = node.spec;
  const r = job.requirements;
  if (!node.online || spec.banned) return false;
  if (node.held.length >= spec.maxConcurrentJobs) return false;
  if (node.held.some((h) => h.jobId === job.jobId)) return false;
  if (r.runtime !== "" && !spec.runtimes.includes(r.runtime)) return false;
  if (spec.reputation < r.minReputation) return false;
  if (r.maxPricePerHour !== undefined && spec.pricePerHour > r.maxPricePerHour) return false;
  if (r.directAccess && !spec.reachable) return false;
  if (r.device === DeviceType.UNSPECIFIED || r.device === DeviceType.CPU) {
    let used = 0n;
    for (const h of node.held) if (h.deviceIndex < 0) used += h.memory;
    return spec.ramAvailableBytes - used >= r.memoryBytes;
  }
  return spec.devices.some((d, i) => {
    if (d.deviceType !== r.device) return false;
    let used = 0n;
    for (const h of node.held) if (h.deviceIndex === i) used += h.memory;
    return d.memoryBytes - used >= r.memoryBytes;
  });
}

/** Whether `job` could run on `node` if the node had nothing reserved (the rules minus load). */
function modelCapable(node: ModelNode, job: SchedulerJob): boolean {
  const spec = node.spec;
  const r = job.requirements;
  if (!node.online || spec.banned) return false;
  if (node.held.some((h) => h.jobId === job.jobId)) return false;
  if (r.runtime !== "" && !spec.runtimes.includes(r.runtime)) return false;
  if (spec.reputation < r.minReputation) return false;
  if (r.maxPricePerHour !== undefined && spec.pricePerHour > r.maxPricePerHour) return false;
  if (r.directAccess && !spec.reachable) return false;
  if (r.device === DeviceType.UNSPECIFIED || r.device === DeviceType.CPU) {
    return spec.ramAvailableBytes >= r.memoryBytes;
  }
  return spec.devices.some((d) => d.deviceType === r.device && d.memoryBytes >= r.memoryBytes);
}

/** The verdict for a refused job, by filtering the model's nodes one requirement at a time. */
function modelVerdict(nodes: readonly ModelNode[], job: SchedulerJob, exclude: string[]): Verdict {
  const r = job.requirements;
  const host = r.device === DeviceType.UNSPECIFIED || r.device === DeviceType.CPU;
  const capacity = (node: ModelNode): bigint => {
    if (host) return node.spec.ramAvailableBytes;
    let largest = -1n;
    for (const d of node.spec.devices) {
      if (d.deviceType === r.device && d.memoryBytes > largest) largest = d.memoryBytes;
    }
    return largest;
  };
  if (nodes.length === 0) return { stage: "unregistered" };
  const usable = nodes.filter((n) => n.online && !n.spec.banned);
  if (usable.length === 0) {
    const banned = nodes.filter((n) => n.online && n.spec.banned).length;
    return { stage: "offline", registered: nodes.length, banned };
  }
  const selected = usable.filter((n) => !exclude.includes(n.spec.address));
  if (selected.length === 0) return { stage: "unselected", online: usable.length };
  const withDevice = selected.filter((n) => capacity(n) >= 0n);
  if (withDevice.length === 0) return { stage: "device" };
  const withRuntime = withDevice.filter(
    (n) => r.runtime === "" || n.spec.runtimes.includes(r.runtime),
  );
  const candidates = withRuntime.length;
  if (candidates === 0) return { stage: "runtime" };
  const reputable = withRuntime.filter((n) => n.spec.reputation >= r.minReputation);
  if (reputable.length === 0) {
    const bestReputation = Math.max(...withRuntime.map((n) => n.spec.reputation));
    return { stage: "reputation", candidates, bestReputation };
  }
  const affordable = reputable.filter(
    (n) => r.maxPricePerHour === undefined || n.spec.pricePerHour <= r.maxPricePerHour,
  );
  if (affordable.length === 0) {
    const cheapest = sortedBigints(reputable.map((n) => n.spec.pricePerHour))[0] as bigint;
    return { stage: "price", candidates, cheapest };
  }
  const reachable = affordable.filter((n) => !r.directAccess || n.spec.reachable);
  if (reachable.length === 0) return { stage: "direct", candidates };
  const bigEnough = reachable.filter((n) => capacity(n) >= r.memoryBytes);
  if (bigEnough.length === 0) {
    const largest = Number(sortedBigints(reachable.map(capacity)).at(-1));
    return { stage: "memory", candidates, largest };
  }
  if (bigEnough.every((n) => n.held.some((h) => h.jobId === job.jobId))) return { stage: "holds" };
  return { stage: "busy" };
}

function sortedBigints(values: bigint[]): bigint[] {
  return values.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function assertWithinCapacity(node: ModelNode): void {
  const spec = node.spec;
  assert.ok(node.held.length <= spec.maxConcurrentJobs, `${spec.address} over its slots`);
  let ram = 0n;
  const perDevice = new Map<number, bigint>();
  for (const h of node.held) {
    if (h.deviceIndex < 0) ram += h.memory;
    else perDevice.set(h.deviceIndex, (perDevice.get(h.deviceIndex) ?? 0n) + h.memory);
  }
  assert.ok(ram <= spec.ramAvailableBytes, `${spec.address} RAM over-committed`);
  for (const [i, used] of perDevice) {
    const device = spec.devices[i];
    assert.ok(
      device !== undefined && used <= device.memoryBytes,
      `${spec.address} device ${i} over-committed`,
    );
  }
}

function randomNode(random: () => number, address: string): SchedulerNode {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const devices: SchedulerNode["devices"][number][] = [
    { deviceType: DeviceType.CPU, memoryBytes: 32n * GiB },
  ];
  const gpus = Math.floor(random() * 3);
  for (let i = 0; i < gpus; i++) {
    devices.push({
      deviceType: pick(GPU_KINDS),
      memoryBytes: BigInt(4 + Math.floor(random() * 21)) * GiB,
    });
  }
  const runtimes = RUNTIMES.filter(() => random() < 0.6);
  return {
    address,
    devices,
    ramAvailableBytes: BigInt(4 + Math.floor(random() * 29)) * GiB,
    runtimes: runtimes.length > 0 ? runtimes : [pick(RUNTIMES)],
    pricePerHour: BigInt(Math.floor(random() * 3_000_000)),
    reputation: Math.round(random() * 100) / 100,
    uptimeRatio: Math.round(random() * 100) / 100,
    maxConcurrentJobs: 1 + Math.floor(random() * 4),
    banned: random() < 0.05,
    reachable: random() < 0.7,
  };
}

function randomJob(random: () => number, jobId: string): SchedulerJob {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  return testJob(
    jobId,
    {
      device: pick(JOB_DEVICES),
      memoryBytes: BigInt(Math.floor(random() * 12)) * GiB,
      runtime: random() < 0.1 ? "" : pick(RUNTIMES),
      maxPricePerHour: random() < 0.3 ? undefined : BigInt(Math.floor(random() * 3_000_000)),
      minReputation: random() < 0.5 ? 0 : Math.round(random() * 80) / 100,
      directAccess: random() < 0.1,
    },
    {
      priority: pick([JobPriority.LOW, JobPriority.NORMAL, JobPriority.HIGH]),
      queuedAtMs: Math.floor(random() * 1000),
    },
  );
}

for (const seed of [1, 2, 3, 4, 5]) {
  test(`random operations never over-commit and always pick the best node (seed ${seed})`, () => {
    const random = seededRandom(seed);
    const scheduler = createScheduler();
    const model = new Map<string, ModelNode>();
    for (let i = 0; i < 60; i++) {
      const spec = randomNode(random, `node-${i}`);
      scheduler.upsertNode(spec);
      model.set(spec.address, { spec, online: true, held: [] });
    }
    const addresses = [...model.keys()];
    let placements = 0;
    let refusals = 0;
    let busyRefusals = 0;
    const stages = new Map<string, number>();
    let nextJob = 0;
    for (let step = 0; step < 3000; step++) {
      const roll = random();
      if (roll < 0.5) {
        const job = randomJob(random, `job-${nextJob++}`);
        const exclude =
          random() < 0.1 ? [addresses[Math.floor(random() * addresses.length)] as string] : [];
        const fitting = [...model.values()].filter(
          (node) => !exclude.includes(node.spec.address) && modelFits(node, job),
        );
        const result = scheduler.place(job, { exclude });
        if (fitting.length === 0) {
          assert.equal(
            result.placed,
            false,
            `step ${step}: placed ${job.jobId} where the model finds no node`,
          );
          const busy = [...model.values()].some(
            (node) => !exclude.includes(node.spec.address) && modelCapable(node, job),
          );
          assert.equal(result.busy, busy, `step ${step}: busy flag (${result.reason})`);
          const verdict = modelVerdict([...model.values()], job, exclude);
          stages.set(verdict.stage, (stages.get(verdict.stage) ?? 0) + 1);
          const expected = describeVerdict(verdict, {
            jobId: job.jobId,
            requirements: job.requirements,
            pool: poolOf(job.requirements.device),
            need: Number(job.requirements.memoryBytes),
            maxPriceNumber: Number(job.requirements.maxPricePerHour ?? 0n),
          });
          assert.equal(result.reason, expected.reason, `step ${step}: reason`);
          if (busy) busyRefusals++;
          refusals++;
          continue;
        }
        assert.ok(
          result.placed,
          `step ${step}: ${job.jobId} refused (${result.placed ? "" : result.reason}) but the model fits it`,
        );
        const best = Math.max(...fitting.map((node) => modelScore(node, job.requirements.device)));
        const chosen = model.get(result.address);
        assert.ok(
          chosen !== undefined && fitting.includes(chosen),
          `step ${step}: chose an unfit node`,
        );
        assert.ok(
          Math.abs(modelScore(chosen, job.requirements.device) - best) < EPSILON,
          `step ${step}: chose a node scoring below the best`,
        );
        chosen.held.push({
          jobId: job.jobId,
          deviceIndex: result.deviceIndex,
          memory: result.reservedMemoryBytes,
        });
        placements++;
      } else if (roll < 0.6) {
        const node = model.get(
          addresses[Math.floor(random() * addresses.length)] as string,
        ) as ModelNode;
        const candidates = Array.from({ length: 6 }, () => randomJob(random, `job-${nextJob++}`));
        const result = scheduler.placeForNode(node.spec.address, candidates);
        const fitting = candidates.filter((job) => modelFits(node, job));
        if (fitting.length === 0) {
          assert.equal(result.placed, false, `step ${step}: pulled a job the model finds unfit`);
          continue;
        }
        assert.ok(result.placed, `step ${step}: pull refused but the model fits a job`);
        const expected = fitting.reduce((a, b) =>
          b.priority > a.priority || (b.priority === a.priority && b.queuedAtMs < a.queuedAtMs)
            ? b
            : a,
        );
        assert.equal(result.jobId, expected.jobId, `step ${step}: pulled the wrong job`);
        node.held.push({
          jobId: result.jobId,
          deviceIndex: result.deviceIndex,
          memory: result.reservedMemoryBytes,
        });
        placements++;
      } else if (roll < 0.92) {
        const holders = [...model.values()].filter((node) => node.held.length > 0);
        if (holders.length === 0) continue;
        const node = holders[Math.floor(random() * holders.length)] as ModelNode;
        const [held] = node.held.splice(Math.floor(random() * node.held.length), 1);
        assert.equal(scheduler.release(node.spec.address, (held as Held).jobId), true);
      } else if (roll < 0.96) {
        const node = model.get(
          addresses[Math.floor(random() * addresses.length)] as string,
        ) as ModelNode;
        node.online = !node.online;
        scheduler.setOnline(node.spec.address, node.online);
      } else if (roll < 0.985) {
        // A new standing, price or runtimes; devices, memory and slots stay as they are.
        const node = model.get(
          addresses[Math.floor(random() * addresses.length)] as string,
        ) as ModelNode;
        const runtimes = RUNTIMES.filter(() => random() < 0.6);
        node.spec = {
          ...node.spec,
          reputation: Math.round(random() * 100) / 100,
          uptimeRatio: Math.round(random() * 100) / 100,
          pricePerHour: BigInt(Math.floor(random() * 3_000_000)),
          runtimes: random() < 0.5 || runtimes.length === 0 ? node.spec.runtimes : runtimes,
        };
        scheduler.upsertNode(node.spec);
      } else {
        // The node leaves (its reservations go with it) and comes back as another machine.
        const address = addresses[Math.floor(random() * addresses.length)] as string;
        assert.equal(scheduler.removeNode(address), true);
        const spec = randomNode(random, address);
        scheduler.upsertNode(spec);
        model.set(address, { spec, online: true, held: [] });
      }
      for (const node of model.values()) {
        assertWithinCapacity(node);
        const state = scheduler.node(node.spec.address);
        assert.equal(state?.usedSlots, node.held.length, `step ${step}: slot books differ`);
      }
      const nodes = [...model.values()];
      assert.deepEqual(scheduler.stats(), {
        nodes: nodes.length,
        onlineNodes: nodes.filter((n) => n.online && !n.spec.banned).length,
        reservations: nodes.reduce((sum, n) => sum + n.held.length, 0),
      });
    }
    // Both outcomes must have happened for the run to mean anything.
    if (process.env.SCHEDULER_TEST_STAGES) console.log(seed, Object.fromEntries(stages));
    assert.ok(
      placements > 500 && busyRefusals > 50 && refusals - busyRefusals > 50,
      `placements ${placements}, refusals ${refusals} (${busyRefusals} busy)`,
    );
  });
}
