/**
 * Human reasons for a job that could not be placed. These texts reach clients (a job nobody can
 * serve says why), so they name the requirement that no node meets, never node internals beyond
 * counts and the best value on offer.
 */

import type { JobRequirements } from "./job-requirements.js";
import { NO_FIT, type NodeState } from "./node-state.js";
import { deviceName, HOST_POOL, poolMemoryName } from "./pools.js";

/** Why nothing was placed and whether waiting may help. */
export interface Explanation {
  readonly reason: string;
  /** True when online nodes meet every requirement but have no free slot or memory right now. */
  readonly busy: boolean;
}

/** The nodes a placement may use: `only` restricts, `exclude` removes. */
export interface NodeSelection {
  readonly only?: ReadonlySet<string> | undefined;
  readonly exclude?: ReadonlySet<string> | undefined;
}

/** A job's requirements with its pool and memory already resolved. */
export interface ResolvedJob {
  readonly jobId: string;
  readonly requirements: JobRequirements;
  readonly pool: number;
  readonly need: number;
  /** Number(requirements.maxPricePerHour), +Infinity without a limit. */
  readonly maxPriceNumber: number;
}

/**
 * The first filter that leaves no node for a job, with what its message needs. Filters, in order:
 * registered, online (and not banned), selection (participants, exclusions), device, runtime,
 * reputation, price, direct access, memory the node offers at all, not holding the job already;
 * past all of them the job is only waiting for room ("busy").
 */
export type Verdict =
  | { readonly stage: "unregistered" }
  | { readonly stage: "offline"; readonly registered: number; readonly banned: number }
  | { readonly stage: "unselected"; readonly online: number }
  | { readonly stage: "device" }
  | { readonly stage: "runtime" }
  | { readonly stage: "reputation"; readonly candidates: number; readonly bestReputation: number }
  | { readonly stage: "price"; readonly candidates: number; readonly cheapest: bigint }
  | { readonly stage: "direct"; readonly candidates: number }
  | { readonly stage: "memory"; readonly candidates: number; readonly largest: number }
  | { readonly stage: "holds" }
  | { readonly stage: "busy" };

/** The client-facing words for `verdict` on `job`. */
export function describeVerdict(verdict: Verdict, job: ResolvedJob): Explanation {
  const { requirements, pool, need } = job;
  const device = deviceName(requirements.device);
  const runtime = requirements.runtime;
  const subject = (candidates: number) =>
    describeCandidates(candidates, pool === HOST_POOL ? "" : device, runtime);
  switch (verdict.stage) {
    case "unregistered":
      return unserved("no compute node is registered");
    case "offline": {
      if (verdict.registered === 1) {
        return unserved(`the only registered node is ${verdict.banned > 0 ? "banned" : "offline"}`);
      }
      const detail = verdict.banned > 0 ? ` and not banned (${verdict.banned} banned)` : "";
      return unserved(`none of the ${verdict.registered} registered nodes is online${detail}`);
    }
    case "unselected":
      return unserved(
        `none of the ${count(verdict.online, "online node")} is one this job may use (participants or exclusions)`,
      );
    case "device":
      return unserved(`no online node has a ${device} device`);
    case "runtime":
      return unserved(
        pool === HOST_POOL
          ? `no online node offers runtime ${runtime}`
          : `no online node with a ${device} device offers runtime ${runtime}`,
      );
    case "reputation":
      return unserved(
        `${subject(verdict.candidates)} but none has reputation >= ${requirements.minReputation} (the best has ${round(verdict.bestReputation)})`,
      );
    case "price":
      return unserved(
        `${subject(verdict.candidates)} but none asks at most ${requirements.maxPricePerHour} base units per hour, ` +
          `the most a payment of ${requirements.paymentAmount ?? 0n} covers for ` +
          `${formatDuration(requirements.durationMs)} (the cheapest asks ${verdict.cheapest})`,
      );
    case "direct":
      return unserved(
        `${subject(verdict.candidates)} but none is reachable for the direct access the job asked for`,
      );
    case "memory":
      return unserved(
        `${subject(verdict.candidates)} but none has ${formatBytes(need)} of ${poolMemoryName(pool)} (the largest offers ${formatBytes(verdict.largest)})`,
      );
    case "holds":
      return unserved(`every suitable online node already holds job ${job.jobId}`);
    case "busy":
      return { reason: busyReason(job), busy: true };
  }
}

// The filters of linearVerdict, in the order they are applied.
const OFFLINE = 0;
const UNSELECTED = 1;
const NO_DEVICE = 2;
const NO_RUNTIME = 3;
const LOW_REPUTATION = 4;
const TOO_DEAR = 5;
const UNREACHABLE = 6;
const TOO_SMALL = 7;
const HOLDS_JOB = 8;
const PASSES = 9;

/**
 * The {@link Verdict} for `job` over `nodes`, by one pass that finds each node's first failed
 * filter. Linear in the nodes; the scheduler uses it for placements restricted to a list of nodes
 * (the index answers the others, see indexed-verdict.ts).
 */
export function linearVerdict(
  nodes: Iterable<NodeState>,
  job: ResolvedJob,
  selection: NodeSelection = {},
): Verdict {
  const { pool } = job;
  // failedAt[k]: nodes whose first failed filter is k.
  const failedAt = new Array<number>(PASSES + 1).fill(0);
  let total = 0;
  let banned = 0;
  let bestReputation = Number.NEGATIVE_INFINITY;
  let cheapest: NodeState | undefined;
  let largest = Number.NEGATIVE_INFINITY;
  for (const node of nodes) {
    total++;
    if (node.banned && node.online) banned++;
    const stage = firstFailure(node, job, selection);
    failedAt[stage] = (failedAt[stage] ?? 0) + 1;
    if (stage >= LOW_REPUTATION) bestReputation = Math.max(bestReputation, node.reputation);
    if (
      stage >= TOO_DEAR &&
      (cheapest === undefined ||
        (node.priceNumber === cheapest.priceNumber
          ? node.price < cheapest.price
          : node.priceNumber < cheapest.priceNumber))
    ) {
      cheapest = node;
    }
    if (stage >= TOO_SMALL) largest = Math.max(largest, node.capacityIn(pool));
  }
  // Nodes that pass every filter before `stage`.
  const reaching = (stage: number): number => {
    let n = total;
    for (let k = 0; k < stage; k++) n -= failedAt[k] ?? 0;
    return n;
  };
  if (total === 0) return { stage: "unregistered" };
  const online = reaching(UNSELECTED);
  if (online === 0) return { stage: "offline", registered: total, banned };
  if (reaching(NO_DEVICE) === 0) return { stage: "unselected", online };
  if (reaching(NO_RUNTIME) === 0) return { stage: "device" };
  const candidates = reaching(LOW_REPUTATION);
  if (candidates === 0) return { stage: "runtime" };
  if (reaching(TOO_DEAR) === 0) return { stage: "reputation", candidates, bestReputation };
  if (reaching(UNREACHABLE) === 0) {
    return { stage: "price", candidates, cheapest: (cheapest as NodeState).price };
  }
  if (reaching(TOO_SMALL) === 0) return { stage: "direct", candidates };
  if (reaching(HOLDS_JOB) === 0) return { stage: "memory", candidates, largest };
  if (reaching(PASSES) === 0) return { stage: "holds" };
  return { stage: "busy" };
}

/** {@link describeVerdict} of {@link linearVerdict}. */
export function explainNoPlacement(
  nodes: Iterable<NodeState>,
  job: ResolvedJob,
  selection: NodeSelection = {},
): Explanation {
  return describeVerdict(linearVerdict(nodes, job, selection), job);
}

/**
 * The reason for a job that online nodes could run but none can take now: "every online node
 * that can run the job is busy right now (no free slot, or less than 16 GiB of CUDA memory free)".
 */
export function busyReason(job: ResolvedJob): string {
  const memory =
    job.need > 0
      ? `, or less than ${formatBytes(job.need)} of ${poolMemoryName(job.pool)} free`
      : "";
  return `every online node that can run the job is busy right now (no free slot${memory})`;
}

function firstFailure(node: NodeState, job: ResolvedJob, selection: NodeSelection): number {
  const { requirements, pool, need } = job;
  if (!node.online || node.banned) return OFFLINE;
  if (
    (selection.only !== undefined && !selection.only.has(node.address)) ||
    selection.exclude?.has(node.address)
  ) {
    return UNSELECTED;
  }
  if (!node.hasPool(pool)) return NO_DEVICE;
  if (requirements.runtime !== "" && !node.runtimes.includes(requirements.runtime)) {
    return NO_RUNTIME;
  }
  if (node.reputation < requirements.minReputation) return LOW_REPUTATION;
  const maxPrice = requirements.maxPricePerHour;
  if (maxPrice !== undefined && node.asksMoreThan(maxPrice, job.maxPriceNumber)) return TOO_DEAR;
  if (requirements.directAccess && !node.reachable) return UNREACHABLE;
  if (node.capacityIn(pool) < need) return TOO_SMALL;
  if (node.holds(job.jobId)) return HOLDS_JOB;
  return PASSES;
}

/** Why a single job cannot go to `node` now: a short "needs …" phrase, and whether waiting helps. */
export function misfit(
  node: NodeState,
  job: ResolvedJob,
): { phrase: string; busy: boolean } | undefined {
  const { requirements, pool, need } = job;
  if (!node.hasPool(pool)) {
    return { phrase: `a ${deviceName(requirements.device)} device`, busy: false };
  }
  if (requirements.runtime !== "" && !node.runtimes.includes(requirements.runtime)) {
    return { phrase: `runtime ${requirements.runtime}`, busy: false };
  }
  if (node.reputation < requirements.minReputation) {
    return { phrase: `reputation >= ${requirements.minReputation}`, busy: false };
  }
  if (
    requirements.maxPricePerHour !== undefined &&
    node.asksMoreThan(requirements.maxPricePerHour, job.maxPriceNumber)
  ) {
    return {
      phrase: `a price of at most ${requirements.maxPricePerHour} base units per hour`,
      busy: false,
    };
  }
  if (requirements.directAccess && !node.reachable) {
    return { phrase: "direct access", busy: false };
  }
  if (node.capacityIn(pool) < need) {
    return { phrase: `${formatBytes(need)} of ${poolMemoryName(pool)}`, busy: false };
  }
  if (node.holds(job.jobId))
    return { phrase: "another node (it is already placed here)", busy: false };
  if (node.fit(pool, need) === NO_FIT) {
    return { phrase: `${formatBytes(need)} of free ${poolMemoryName(pool)}`, busy: true };
  }
  return undefined;
}

/**
 * "none of the 6 queued jobs fits node X: 3 need runtime tfjs, 1 needs a CUDA device", from the
 * phrase of each job that did not fit.
 */
export function explainNodeMisfits(
  address: string,
  candidates: number,
  phrases: ReadonlyMap<string, number>,
): string {
  if (candidates === 0) return `no queued job for node ${address}`;
  const parts = [...phrases].map(([phrase, n]) => `${n} ${n === 1 ? "needs" : "need"} ${phrase}`);
  const head =
    candidates === 1
      ? `the queued job does not fit node ${address}`
      : `none of the ${candidates} queued jobs fits node ${address}`;
  return `${head}: ${parts.join(", ")}`;
}

/** Bytes in binary units: "16 GiB", "1.5 GiB", "512 MiB", "100 B". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${round(value)} ${units[unit]}`;
}

/** A duration in the largest whole-ish unit: "2 h", "1.5 h", "90 s", "250 ms". */
export function formatDuration(ms: number): string {
  if (ms >= 3_600_000) return `${round(ms / 3_600_000)} h`;
  if (ms >= 60_000) return `${round(ms / 60_000)} min`;
  if (ms >= 1000) return `${round(ms / 1000)} s`;
  return `${ms} ms`;
}

function describeCandidates(n: number, device: string, runtime: string): string {
  const nodes = count(n, "online node");
  const have = n === 1 ? "has" : "have";
  const offer = n === 1 ? "offers" : "offer";
  if (device !== "" && runtime !== "")
    return `${nodes} ${have} a ${device} device and runtime ${runtime}`;
  if (device !== "") return `${nodes} ${have} a ${device} device`;
  if (runtime !== "") return `${nodes} ${offer} runtime ${runtime}`;
  return `${nodes} ${n === 1 ? "is" : "are"} up`;
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function round(value: number): string {
  return String(Math.round(value * 100) / 100);
}

function unserved(reason: string): Explanation {
  return { reason, busy: false };
}
