/**
 * Scheduler throughput: placements per second with 1,000 and 10,000 registered nodes, against the
 * aim of 10,000 placements/s at 10,000 nodes and against a naive scheduler that applies the same
 * rules with a linear scan over every node (implemented below), in the same process, on the same
 * nodes and the same job sequence.
 *
 *   pnpm --filter @tessera/job-server bench:scheduler
 *   BENCH_NODES=1000,10000 BENCH_CYCLES=200000 BENCH_SEED=7 node --import tsx services/job-server/bench/scheduler.bench.ts
 *
 * Nodes: mixed devices (60 % CPU only, 25 % one CUDA GPU, 10 % 2-8 CUDA GPUs, 5 % ROCm), runtimes
 * (onnxruntime 80 %, tfjs 50 %, tessera-data 30 %), 8-256 GiB RAM, 1-8 slots, prices, reputations
 * and uptimes spread out, 95 % online, 1 % banned, 70 % reachable.
 * Jobs: 55 % any device, 10 % CPU, 30 % CUDA, 4 % ROCm, 1 % asking for GPU memory no node has
 * (refused with the reason, which the scheduler reads from its index); payments that most nodes'
 * prices fit; a third with a minimum reputation; 5 % asking for direct access.
 *
 * Scenarios, each a sequence of cycles:
 * - idle: place a job, then release it at once (the cluster stays empty);
 * - loaded: the cluster holds BENCH_LOAD (default 50 %) of its online slots; each cycle places a
 *   new job and releases the oldest held one, so scores and free capacity keep changing.
 * placements/s = successful placements / wall time of the cycles (places and releases included).
 * Latency: each place() call timed alone in a separate pass (p50, p99), successful placements and
 * refusals apart (the indexed scheduler's refusals split into "busy" and "no node could"; each
 * carries its reason, the naive one only reports that nothing fits). Before timing, a lockstep
 * run checks that the indexed scheduler and the naive one choose nodes of the same score.
 */
import { cpus } from "node:os";
import { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { JobPriority } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { JobRequirements, SchedulerJob } from "../src/scheduler/job-requirements.js";
import { createScheduler, type Scheduler } from "../src/scheduler/scheduler.js";
import type { SchedulerNode } from "../src/scheduler/scheduler-node.js";

const NODE_COUNTS = (process.env.BENCH_NODES ?? "1000,10000").split(",").map(Number);
const CYCLES = Number(process.env.BENCH_CYCLES ?? 200_000);
/** The naive scheduler gets BENCH_NAIVE_VISITS / nodes cycles (at least 1000). */
const NAIVE_VISITS = Number(process.env.BENCH_NAIVE_VISITS ?? 20_000_000);
const LATENCY_SAMPLES = Number(process.env.BENCH_LATENCY_SAMPLES ?? 50_000);
const LOCKSTEP_CYCLES = Number(process.env.BENCH_LOCKSTEP_CYCLES ?? 2000);
const SEED = Number(process.env.BENCH_SEED ?? 7);
const LOAD = Number(process.env.BENCH_LOAD ?? 0.5);
const AIM = 10_000;
const GiB = 1024 ** 3;
const TEMPLATES = 8192;

// ---------------------------------------------------------------------------------------------
// Workload

function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeNodes(count: number, random: () => number): SchedulerNode[] {
  const between = (low: number, high: number) => low + Math.floor(random() * (high - low + 1));
  const nodes: SchedulerNode[] = [];
  for (let i = 0; i < count; i++) {
    const kind = random();
    const devices: { deviceType: DeviceType; memoryBytes: bigint }[] = [
      { deviceType: DeviceType.CPU, memoryBytes: 64n * BigInt(GiB) },
    ];
    const gpu = (type: DeviceType) => ({
      deviceType: type,
      memoryBytes: BigInt([8, 12, 16, 24, 40, 48, 80][between(0, 6)] as number) * BigInt(GiB),
    });
    if (kind < 0.6) {
      // CPU only.
    } else if (kind < 0.85) {
      devices.push(gpu(DeviceType.CUDA));
    } else if (kind < 0.95) {
      const card = gpu(DeviceType.CUDA);
      for (let g = between(2, 8); g > 0; g--) devices.push(card);
    } else {
      devices.push(gpu(DeviceType.ROCM));
    }
    const runtimes: string[] = [];
    if (random() < 0.8) runtimes.push("onnxruntime");
    if (random() < 0.5) runtimes.push("tfjs");
    if (random() < 0.3) runtimes.push("tessera-data");
    if (runtimes.length === 0) runtimes.push("onnxruntime");
    nodes.push({
      address: `tsr1bench${i.toString().padStart(6, "0")}`,
      devices,
      ramAvailableBytes: BigInt(between(8, 256)) * BigInt(GiB),
      runtimes,
      pricePerHour: BigInt(between(0, 3_000_000)),
      reputation: random(),
      uptimeRatio: random(),
      maxConcurrentJobs: between(1, 8),
      banned: random() < 0.01,
      online: random() < 0.95,
      reachable: random() < 0.7,
    });
  }
  return nodes;
}

function makeTemplates(random: () => number): JobRequirements[] {
  const templates: JobRequirements[] = [];
  for (let i = 0; i < TEMPLATES; i++) {
    const kind = random();
    let device: DeviceType = DeviceType.UNSPECIFIED;
    let memory = 0.5 + random() * 15.5;
    if (kind < 0.55) device = DeviceType.UNSPECIFIED;
    else if (kind < 0.65) device = DeviceType.CPU;
    else if (kind < 0.95) {
      device = DeviceType.CUDA;
      memory = 2 + random() * 38;
    } else if (kind < 0.99) {
      device = DeviceType.ROCM;
      memory = 2 + random() * 14;
    } else {
      device = DeviceType.CUDA;
      memory = 200; // no node has a 200 GiB GPU: refused, with an explanation
    }
    const runtimeRoll = random();
    const runtime =
      runtimeRoll < 0.5 ? "onnxruntime" : runtimeRoll < 0.85 ? "tfjs" : "tessera-data";
    const durationMs = 60_000 * (1 + Math.floor(random() * 240));
    const maxPricePerHour = BigInt(Math.floor(1_000_000 + random() * 4_000_000));
    templates.push({
      device,
      memoryBytes: BigInt(Math.floor(memory * GiB)),
      runtime,
      maxPricePerHour,
      paymentAmount: (maxPricePerHour * BigInt(durationMs)) / 3_600_000n,
      durationMs,
      minReputation: random() < 0.33 ? random() * 0.6 : 0,
      directAccess: random() < 0.05,
    });
  }
  return templates;
}

function jobAt(templates: readonly JobRequirements[], n: number): SchedulerJob {
  return {
    jobId: `job-${n}`,
    requirements: templates[n % TEMPLATES] as JobRequirements,
    priority: JobPriority.NORMAL,
    queuedAtMs: n,
  };
}

// ---------------------------------------------------------------------------------------------
// The naive baseline: the same eligibility rules, score and best-fit device choice, found by
// scanning every node for every placement.

interface NaiveDevice {
  readonly pool: number;
  readonly capacity: number;
  reserved: number;
}

interface NaiveNode {
  readonly address: string;
  readonly usable: boolean;
  readonly reachable: boolean;
  readonly runtimes: readonly string[];
  readonly price: bigint;
  readonly priceNumber: number;
  readonly reputation: number;
  readonly uptime: number;
  readonly maxSlots: number;
  readonly ram: number;
  ramReserved: number;
  readonly devices: NaiveDevice[];
  readonly jobs: Map<string, { deviceIndex: number; memory: number }>;
}

interface Held {
  readonly address: string;
  readonly jobId: string;
  readonly deviceIndex: number;
  readonly memory: number;
  readonly score: number;
}

function hostPool(device: DeviceType): boolean {
  return device === DeviceType.UNSPECIFIED || device === DeviceType.CPU;
}

class NaiveScheduler {
  private readonly nodes: NaiveNode[];
  private readonly byAddress = new Map<string, NaiveNode>();

  constructor(specs: readonly SchedulerNode[]) {
    this.nodes = specs.map((spec) => ({
      address: spec.address,
      usable: (spec.online ?? true) && !(spec.banned ?? false),
      reachable: spec.reachable ?? false,
      runtimes: spec.runtimes,
      price: spec.pricePerHour,
      priceNumber: Number(spec.pricePerHour),
      reputation: spec.reputation,
      uptime: spec.uptimeRatio,
      maxSlots: spec.maxConcurrentJobs,
      ram: Number(spec.ramAvailableBytes),
      ramReserved: 0,
      devices: spec.devices.map((d) => ({
        pool: hostPool(d.deviceType) ? 0 : d.deviceType,
        capacity: Number(d.memoryBytes),
        reserved: 0,
      })),
      jobs: new Map(),
    }));
    for (const node of this.nodes) this.byAddress.set(node.address, node);
  }

  place(job: SchedulerJob): Held | undefined {
    const r = job.requirements;
    const pool = hostPool(r.device) ? 0 : r.device;
    const need = Number(r.memoryBytes);
    let best: NaiveNode | undefined;
    let bestDevice = -1;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (const node of this.nodes) {
      if (!node.usable || node.jobs.size >= node.maxSlots) continue;
      if (r.runtime !== "" && !node.runtimes.includes(r.runtime)) continue;
      if (node.reputation < r.minReputation) continue;
      if (r.maxPricePerHour !== undefined && node.price > r.maxPricePerHour) continue;
      if (r.directAccess && !node.reachable) continue;
      if (node.jobs.has(job.jobId)) continue;
      let device = -1;
      let capacity = 0;
      let free = 0;
      if (pool === 0) {
        if (node.ram - node.ramReserved < need) continue;
        capacity = node.ram;
        free = node.ram - node.ramReserved;
      } else {
        let deviceFree = Number.POSITIVE_INFINITY;
        for (let i = 0; i < node.devices.length; i++) {
          const d = node.devices[i] as NaiveDevice;
          if (d.pool !== pool) continue;
          capacity += d.capacity;
          const f = d.capacity - d.reserved;
          free += Math.max(0, f);
          if (f >= need && f < deviceFree) {
            device = i;
            deviceFree = f;
          }
        }
        if (device < 0) continue;
      }
      const slots = (node.maxSlots - node.jobs.size) / node.maxSlots;
      const memory = capacity > 0 ? Math.max(0, free) / capacity : 0;
      const price = node.priceNumber <= 0 ? 1 : 1_000_000 / (1_000_000 + node.priceNumber);
      const score =
        0.4 * node.reputation + 0.25 * ((slots + memory) / 2) + 0.2 * node.uptime + 0.15 * price;
      if (score > bestScore) {
        best = node;
        bestScore = score;
        bestDevice = device;
      }
    }
    if (best === undefined) return undefined;
    this.reserve(best.address, job.jobId, bestDevice, need);
    return {
      address: best.address,
      jobId: job.jobId,
      deviceIndex: bestDevice,
      memory: need,
      score: bestScore,
    };
  }

  reserve(address: string, jobId: string, deviceIndex: number, memory: number): void {
    const node = this.byAddress.get(address) as NaiveNode;
    node.jobs.set(jobId, { deviceIndex, memory });
    if (deviceIndex < 0) node.ramReserved += memory;
    else (node.devices[deviceIndex] as NaiveDevice).reserved += memory;
  }

  release(address: string, jobId: string): void {
    const node = this.byAddress.get(address) as NaiveNode;
    const held = node.jobs.get(jobId);
    if (held === undefined) return;
    node.jobs.delete(jobId);
    if (held.deviceIndex < 0) node.ramReserved -= held.memory;
    else (node.devices[held.deviceIndex] as NaiveDevice).reserved -= held.memory;
  }
}

// ---------------------------------------------------------------------------------------------
// Driving both

interface Impl {
  place(job: SchedulerJob): Held | undefined;
  release(address: string, jobId: string): void;
  /** Refusals where some online node could run the job once it has room (indexed only). */
  busyRefusals?: number;
}

function indexed(scheduler: Scheduler): Impl {
  const impl: Impl = {
    busyRefusals: 0,
    place(job) {
      const result = scheduler.place(job);
      if (!result.placed) {
        if (result.busy) impl.busyRefusals = (impl.busyRefusals ?? 0) + 1;
        return undefined;
      }
      return {
        address: result.address,
        jobId: result.jobId,
        deviceIndex: result.deviceIndex,
        memory: Number(result.reservedMemoryBytes),
        score: result.score,
      };
    },
    release(address, jobId) {
      scheduler.release(address, jobId);
    },
  };
  return impl;
}

/** FIFO of held placements. */
class Window {
  private items: Held[] = [];
  private head = 0;
  get size(): number {
    return this.items.length - this.head;
  }
  push(held: Held): void {
    this.items.push(held);
  }
  shift(): Held {
    const held = this.items[this.head++] as Held;
    if (this.head > 65_536) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return held;
  }
  all(): Held[] {
    return this.items.slice(this.head);
  }
}

interface Run {
  placed: number;
  refused: number;
  ms: number;
}

/** `cycles` cycles; with a window of `limit` held placements (loaded), else release at once (idle). */
function cycle(
  impl: Impl,
  templates: readonly JobRequirements[],
  first: number,
  cycles: number,
  window: Window | undefined,
  limit: number,
  latencies?: Float64Array,
  outcomes?: Uint8Array,
): Run {
  let placed = 0;
  let refused = 0;
  const started = process.hrtime.bigint();
  for (let n = first; n < first + cycles; n++) {
    const job = jobAt(templates, n);
    let held: Held | undefined;
    if (latencies !== undefined) {
      const busyBefore = impl.busyRefusals;
      const t0 = process.hrtime.bigint();
      held = impl.place(job);
      latencies[n - first] = Number(process.hrtime.bigint() - t0);
      if (outcomes !== undefined) {
        outcomes[n - first] =
          held !== undefined ? PLACED : impl.busyRefusals !== busyBefore ? BUSY : UNSERVED;
      }
    } else {
      held = impl.place(job);
    }
    if (held === undefined) {
      refused++;
      continue;
    }
    placed++;
    if (window === undefined) {
      impl.release(held.address, held.jobId);
      continue;
    }
    window.push(held);
    while (window.size > limit) {
      const oldest = window.shift();
      impl.release(oldest.address, oldest.jobId);
    }
  }
  return { placed, refused, ms: Number(process.hrtime.bigint() - started) / 1e6 };
}

/** Fills the cluster to `limit` held placements with the indexed scheduler; returns the next job number. */
function prefill(
  impl: Impl,
  templates: readonly JobRequirements[],
  window: Window,
  limit: number,
): number {
  let n = 1_000_000_000;
  let misses = 0;
  while (window.size < limit && misses < limit) {
    const held = impl.place(jobAt(templates, n++));
    if (held === undefined) misses++;
    else window.push(held);
  }
  return n;
}

/** The p-quantile in µs of the samples (ns) whose outcome is `outcome`; NaN when there are none. */
function percentile(
  samples: Float64Array,
  outcomes: Uint8Array,
  outcome: number,
  p: number,
): number {
  const sorted = samples.filter((_, i) => outcomes[i] === outcome).sort();
  if (sorted.length === 0) return Number.NaN;
  return (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number) / 1000;
}

// Outcomes of one timed place() call.
const UNSERVED = 0;
const PLACED = 1;
const BUSY = 2;

interface Measured {
  readonly perSecond: number;
  readonly placed: number;
  readonly refused: number;
  /** Of the refusals, those the indexed scheduler called busy; undefined for the naive one. */
  readonly busy: number | undefined;
  readonly cycles: number;
  /** place() latency of successful placements, µs. */
  readonly p50: number;
  readonly p99: number;
  /** place() latency of refusals no online node could serve (indexed: explained), µs. */
  readonly refusedP50: number;
  readonly refusedP99: number;
  /** place() latency of busy refusals (indexed only), µs. */
  readonly busyP50: number;
  readonly busyP99: number;
}

function measure(
  makeImpl: () => { impl: Impl; copyFrom?: (held: readonly Held[]) => void },
  templates: readonly JobRequirements[],
  cycles: number,
  loaded: boolean,
  limit: number,
  prefilled: readonly Held[] | undefined,
): Measured {
  // Throughput pass.
  const { impl, copyFrom } = makeImpl();
  const window = new Window();
  if (loaded && prefilled !== undefined) {
    copyFrom?.(prefilled);
    for (const held of prefilled) window.push(held);
  }
  cycle(impl, templates, 0, Math.min(cycles, 2000), loaded ? window : undefined, limit); // warm-up
  const busyBefore = impl.busyRefusals;
  const run = cycle(impl, templates, 10_000_000, cycles, loaded ? window : undefined, limit);
  const busy = impl.busyRefusals === undefined ? undefined : impl.busyRefusals - (busyBefore ?? 0);
  // Latency pass, on its own instance in the same state.
  const second = makeImpl();
  const secondWindow = new Window();
  if (loaded && prefilled !== undefined) {
    second.copyFrom?.(prefilled);
    for (const held of prefilled) secondWindow.push(held);
  }
  const samples = new Float64Array(Math.min(LATENCY_SAMPLES, cycles));
  const outcomes = new Uint8Array(samples.length);
  cycle(
    second.impl,
    templates,
    0,
    Math.min(cycles, 2000),
    loaded ? secondWindow : undefined,
    limit,
  );
  cycle(
    second.impl,
    templates,
    20_000_000,
    samples.length,
    loaded ? secondWindow : undefined,
    limit,
    samples,
    outcomes,
  );
  return {
    perSecond: run.placed / (run.ms / 1000),
    placed: run.placed,
    refused: run.refused,
    busy,
    cycles,
    p50: percentile(samples, outcomes, PLACED, 0.5),
    p99: percentile(samples, outcomes, PLACED, 0.99),
    refusedP50: percentile(samples, outcomes, UNSERVED, 0.5),
    refusedP99: percentile(samples, outcomes, UNSERVED, 0.99),
    busyP50: percentile(samples, outcomes, BUSY, 0.5),
    busyP99: percentile(samples, outcomes, BUSY, 0.99),
  };
}

function lockstep(
  nodes: readonly SchedulerNode[],
  templates: readonly JobRequirements[],
  limit: number,
): string {
  const scheduler = createScheduler();
  for (const node of nodes) scheduler.upsertNode(node);
  const fast = indexed(scheduler);
  const naive = new NaiveScheduler(nodes);
  const fastWindow = new Window();
  const naiveWindow = new Window();
  let same = 0;
  for (let n = 0; n < LOCKSTEP_CYCLES; n++) {
    const job = jobAt(templates, 30_000_000 + n);
    const a = fast.place(job);
    const b = naive.place(job);
    if (a === undefined || b === undefined) {
      if (a !== b) throw new Error(`lockstep: job ${job.jobId} placed by only one scheduler`);
      same++;
      continue;
    }
    if (Math.abs(a.score - b.score) > 1e-9) {
      throw new Error(
        `lockstep: job ${job.jobId} scored ${a.score} (indexed) vs ${b.score} (naive)`,
      );
    }
    if (a.address !== b.address) return `${same} identical, then a tie between equal-score nodes`;
    same++;
    fastWindow.push(a);
    naiveWindow.push(b);
    while (fastWindow.size > limit) {
      const x = fastWindow.shift();
      fast.release(x.address, x.jobId);
      const y = naiveWindow.shift();
      naive.release(y.address, y.jobId);
    }
  }
  return `${same}/${LOCKSTEP_CYCLES} placements identical`;
}

// ---------------------------------------------------------------------------------------------

function fmt(value: number, digits = 0): string {
  return value.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

function main(): void {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  console.log(
    `scheduler bench: node ${process.version}, ${cpu} (${cpus().length} cores), seed ${SEED}, ` +
      `aim ${fmt(AIM)} placements/s`,
  );
  const random = seeded(SEED);
  const templates = makeTemplates(random);
  for (const count of NODE_COUNTS) {
    const nodes = makeNodes(count, random);
    const onlineSlots = nodes
      .filter((n) => (n.online ?? true) && !n.banned)
      .reduce((sum, n) => sum + n.maxConcurrentJobs, 0);
    const limit = Math.floor(onlineSlots * LOAD);
    const naiveCycles = Math.max(1000, Math.floor(NAIVE_VISITS / count));
    console.log(
      `\n${fmt(count)} nodes (${fmt(onlineSlots)} slots on usable nodes); loaded = ${fmt(limit)} jobs held`,
    );
    console.log(`  lockstep check (loaded): ${lockstep(nodes, templates, limit)}`);

    const makeIndexed = () => {
      const scheduler = createScheduler();
      for (const node of nodes) scheduler.upsertNode(node);
      return {
        impl: indexed(scheduler),
        copyFrom: (held: readonly Held[]) => {
          // Replayed in order on the same nodes, each reservation lands as it did (same device).
          for (const h of held) {
            const n = Number(h.jobId.slice("job-".length));
            const again = scheduler.placeForNode(h.address, [jobAt(templates, n)]);
            if (!again.placed || again.deviceIndex !== h.deviceIndex) {
              throw new Error(`prefill copy failed for ${h.jobId}`);
            }
          }
        },
      };
    };
    const makeNaive = () => {
      const naive = new NaiveScheduler(nodes);
      return {
        impl: naive as Impl,
        copyFrom: (held: readonly Held[]) => {
          for (const h of held) naive.reserve(h.address, h.jobId, h.deviceIndex, h.memory);
        },
      };
    };
    // One prefilled state shared by every loaded run.
    const seed = makeIndexed();
    const seedWindow = new Window();
    prefill(seed.impl, templates, seedWindow, limit);
    const prefilled = seedWindow.all();

    for (const loaded of [false, true]) {
      const scenario = loaded ? "loaded" : "idle";
      const fast = measure(makeIndexed, templates, CYCLES, loaded, limit, prefilled);
      const slow = measure(makeNaive, templates, naiveCycles, loaded, limit, prefilled);
      const report = (name: string, m: Measured) => {
        const busy = m.busy === undefined ? "" : ` (${fmt(m.busy)} busy)`;
        const µs = (p50: number, p99: number) =>
          Number.isNaN(p50) ? "none" : `p50 ${fmt(p50, 1)} p99 ${fmt(p99, 1)}`;
        console.log(
          `  ${scenario.padEnd(6)} ${name.padEnd(7)} ${fmt(m.perSecond).padStart(9)} placements/s ` +
            `(${fmt(m.placed)} placed, ${fmt(m.refused)} refused${busy}, ${fmt(m.cycles)} cycles)`,
        );
        console.log(
          `  ${"".padEnd(6)} ${"".padEnd(7)} place() µs: placed ${µs(m.p50, m.p99)}` +
            (m.busy === undefined
              ? ` | refused ${µs(m.refusedP50, m.refusedP99)}`
              : ` | refused busy ${µs(m.busyP50, m.busyP99)} | refused, no node could ${µs(m.refusedP50, m.refusedP99)}`),
        );
      };
      report("indexed", fast);
      report("naive", slow);
      console.log(
        `  ${scenario.padEnd(6)} ratios: indexed / aim = ${fmt(fast.perSecond / AIM, 2)}x, ` +
          `naive / aim = ${fmt(slow.perSecond / AIM, 2)}x, indexed / naive = ${fmt(fast.perSecond / slow.perSecond, 1)}x`,
      );
    }
  }
}

main();
