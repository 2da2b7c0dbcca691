/**
 * The job scheduler: an in-memory index of the nodes connected to this job-server replica that
 * places queued jobs on them and reserves capacity, so a node never holds more jobs than its
 * slots or more memory than it offers.
 *
 * Two directions, one set of rules:
 * - `place(job)`: the best node for a job (push: a job was submitted or requeued);
 * - `placeForNode(address, candidates)`: the best job for a node with a free slot (pull: the node
 *   asks for work), by priority, then age.
 *
 * A node is eligible for a job when it is online, not banned, has a free slot, has the required
 * device (UNSPECIFIED and CPU jobs run on any node's host RAM), offers the runtime, has reputation
 * >= min_reputation, is affordable under the price rule (job-requirements.ts), is directly
 * reachable when the job asked for direct access, has the job's memory free in the pool it uses
 * and does not hold the job already. Among eligible nodes the highest score wins (score.ts).
 *
 * Index: nodes sit in buckets keyed by (memory pool, runtime); each bucket is a tournament tree
 * ordered by score (bucket-tree.ts). A placement searches one bucket (every bucket of the pool when
 * the job accepts any runtime) and updates the chosen node's leaves: O(log n) when most nodes
 * qualify. A refusal is explained from counters and a second, load-free layer of the same trees
 * (indexed-verdict.ts): "busy" when some online node could run the job once it has room,
 * otherwise the first requirement no online node meets; no pass over every node.
 *
 * Not thread-safe and not durable: the job server rebuilds it from registrations, heartbeats and
 * its leases; everything runs on the event loop, so each call is atomic.
 */
import { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { JobPriority } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { BucketTree } from "./bucket-tree.js";
import { SchedulerInputError } from "./errors.js";
import {
  describeVerdict,
  explainNodeMisfits,
  linearVerdict,
  misfit,
  type ResolvedJob,
} from "./explain.js";
import { type IndexView, indexedVerdict } from "./indexed-verdict.js";
import { costFor, type JobRequirements, type SchedulerJob } from "./job-requirements.js";
import {
  bytesToNumber,
  FITS_HOST,
  NO_FIT,
  NodeState,
  type SchedulerNodeState,
} from "./node-state.js";
import { poolOf } from "./pools.js";
import type { SchedulerNode } from "./scheduler-node.js";
import {
  DEFAULT_REFERENCE_PRICE_PER_HOUR,
  DEFAULT_SCORE_WEIGHTS,
  type ScoreWeights,
} from "./score.js";

/** Options of {@link createScheduler}. */
export interface SchedulerOptions {
  /** Weights of the score terms; unset ones keep {@link DEFAULT_SCORE_WEIGHTS}. */
  readonly weights?: Partial<ScoreWeights>;
  /** Price that scores 0.5 on the price term, base units per hour; default 1,000,000. */
  readonly referencePricePerHour?: bigint;
}

/** Restricts the nodes one {@link Scheduler.place} may use. */
export interface PlaceOptions {
  /** Only these nodes (e.g. a federated job's participants). */
  readonly only?: Iterable<string>;
  /** Never these nodes (e.g. the node whose attempt just failed). */
  readonly exclude?: Iterable<string>;
}

/** A job placed on a node, its slot and memory reserved until {@link Scheduler.release}. */
export interface Placement {
  readonly placed: true;
  readonly jobId: string;
  /** The node's address. */
  readonly address: string;
  /** The node's score for the job when it was chosen (score.ts). */
  readonly score: number;
  /** Index of the device in the node's `devices` the memory was reserved on; -1 for host RAM. */
  readonly deviceIndex: number;
  /** Kind of that device; DEVICE_TYPE_CPU for host RAM. */
  readonly deviceType: DeviceType;
  /** Memory reserved, in bytes. */
  readonly reservedMemoryBytes: bigint;
  /** The node's hourly price, base units. */
  readonly pricePerHour: bigint;
  /** What the job costs on this node for its priced duration (rounded up). */
  readonly estimatedCost: bigint;
}

/** Nothing was placed. */
export interface NoPlacement {
  readonly placed: false;
  /** The job that found no node (`place`); undefined from `placeForNode`. */
  readonly jobId: string | undefined;
  /**
   * Why, in words a client can read, naming the requirement no node meets, e.g.
   * "no online node offers runtime tfjs" or "2 online nodes have a CUDA device and runtime
   * onnxruntime but none has 16 GiB of CUDA memory (the largest offers 8 GiB)".
   */
  readonly reason: string;
  /**
   * True when the requirements can be met by online nodes that are busy right now (no free slot
   * or not enough free memory): the job can wait. False when no online node could run it as asked.
   */
  readonly busy: boolean;
}

/** Counts for metrics. */
export interface SchedulerStats {
  /** Registered nodes. */
  readonly nodes: number;
  /** Online, unbanned nodes. */
  readonly onlineNodes: number;
  /** Reservations held. */
  readonly reservations: number;
}

/** The scheduler; see the module comment. */
export interface Scheduler {
  /**
   * Adds a node or replaces its description; its reservations are kept and counted against the
   * new offer (a smaller offer can leave it full, never over-committed by a new placement).
   * @throws SchedulerInputError when a field is out of range.
   */
  upsertNode(node: SchedulerNode): void;
  /** Forgets a node and its reservations; false when it was unknown. */
  removeNode(address: string): boolean;
  /** Marks a node online or offline (offline nodes get no jobs); false when it is unknown. */
  setOnline(address: string, online: boolean): boolean;
  /** Places `job` on the best eligible node and reserves a slot and its memory there. */
  place(job: SchedulerJob, options?: PlaceOptions): Placement | NoPlacement;
  /**
   * Picks the job among `candidates` that the node at `address` should run next (highest
   * priority, then oldest, then first given) among those it can run now, and reserves it there.
   */
  placeForNode(address: string, candidates: Iterable<SchedulerJob>): Placement | NoPlacement;
  /** Frees the slot and memory `jobId` holds on `address`; false when there was no reservation. */
  release(address: string, jobId: string): boolean;
  /** A node's accounting (reservations, free capacity), or undefined when unknown. */
  node(address: string): SchedulerNodeState | undefined;
  /** Counts for metrics. */
  stats(): SchedulerStats;
}

/**
 * An empty scheduler.
 * @throws SchedulerInputError when a weight is negative or not finite, or the reference price is
 * not positive.
 */
export function createScheduler(options: SchedulerOptions = {}): Scheduler {
  const weights: ScoreWeights = { ...DEFAULT_SCORE_WEIGHTS, ...options.weights };
  for (const [name, weight] of Object.entries(weights)) {
    if (!(Number.isFinite(weight) && weight >= 0)) {
      throw new SchedulerInputError(`weights.${name}`, `${weight} is not a finite number >= 0`);
    }
  }
  const referenceBig = options.referencePricePerHour ?? DEFAULT_REFERENCE_PRICE_PER_HOUR;
  if (referenceBig <= 0n) {
    throw new SchedulerInputError("referencePricePerHour", "must be > 0");
  }
  const reference = Number(referenceBig);
  const nodes = new Map<string, NodeState>();
  const buckets = new Map<string, BucketTree<NodeState>>();
  const bucketsByPool = new Map<number, BucketTree<NodeState>[]>();
  let reservations = 0;
  // Counters behind the explanations (indexed-verdict.ts).
  let usable = 0;
  let bannedOnline = 0;
  const usableByPool = new Map<number, number>();
  const view: IndexView = {
    get registered() {
      return nodes.size;
    },
    get usable() {
      return usable;
    },
    get bannedOnline() {
      return bannedOnline;
    },
    usableWithPool: (pool) => usableByPool.get(pool) ?? 0,
    trees: (pool, runtime) => {
      if (runtime === "") return bucketsByPool.get(pool) ?? [];
      const tree = buckets.get(`${pool}|${runtime}`);
      return tree === undefined ? [] : [tree];
    },
    node: (address) => nodes.get(address),
  };

  // Adds (sign 1) or takes back (sign -1) a node's part of the counters.
  function account(node: NodeState, sign: 1 | -1): void {
    if (!node.online) return;
    if (node.banned) {
      bannedOnline += sign;
      return;
    }
    usable += sign;
    for (const pool of node.pools) usableByPool.set(pool, (usableByPool.get(pool) ?? 0) + sign);
  }

  function bucket(pool: number, runtime: string): BucketTree<NodeState> {
    const key = `${pool}|${runtime}`;
    let tree = buckets.get(key);
    if (tree === undefined) {
      tree = new BucketTree<NodeState>();
      buckets.set(key, tree);
      const forPool = bucketsByPool.get(pool);
      if (forPool === undefined) bucketsByPool.set(pool, [tree]);
      else forPool.push(tree);
    }
    return tree;
  }

  function index(node: NodeState): void {
    for (const pool of node.pools) {
      for (const runtime of node.runtimes) {
        const tree = bucket(pool, runtime);
        node.memberships.push({ tree, slot: tree.add(node), pool });
      }
    }
    refreshIdle(node);
    refresh(node);
  }

  function unindex(node: NodeState): void {
    for (const membership of node.memberships) membership.tree.remove(membership.slot);
    node.memberships = [];
  }

  // What the node could take when idle: changes only with its description or status.
  function refreshIdle(node: NodeState): void {
    const usable = node.online && !node.banned;
    for (const membership of node.memberships) {
      membership.tree.setIdle(
        membership.slot,
        usable,
        node.capacityIn(membership.pool),
        node.priceNumber,
        node.reputation,
        node.reachable,
      );
    }
  }

  // Memberships are grouped by pool (see index), so each pool's score is computed once.
  function refresh(node: NodeState): void {
    if (!node.active) {
      for (const membership of node.memberships) membership.tree.deactivate(membership.slot);
      return;
    }
    let pool = Number.NaN;
    let score = 0;
    let free = 0;
    for (const membership of node.memberships) {
      if (membership.pool !== pool) {
        pool = membership.pool;
        score = node.scoreIn(pool, weights, reference);
        free = node.freeIn(pool);
      }
      membership.tree.set(
        membership.slot,
        score,
        free,
        node.priceNumber,
        node.reputation,
        node.reachable,
      );
    }
  }

  function commit(node: NodeState, job: ResolvedJob, score: number): Placement {
    const fit = node.fit(job.pool, job.need);
    const deviceIndex = fit === FITS_HOST ? -1 : fit;
    node.reserve(job.jobId, job.pool, deviceIndex, job.need);
    reservations++;
    refresh(node);
    return {
      placed: true,
      jobId: job.jobId,
      address: node.address,
      score,
      deviceIndex,
      deviceType:
        deviceIndex >= 0
          ? (node.devices[deviceIndex]?.deviceType ?? DeviceType.UNSPECIFIED)
          : DeviceType.CPU,
      reservedMemoryBytes: BigInt(job.need),
      pricePerHour: node.price,
      estimatedCost: costFor(node.price, job.requirements.durationMs),
    };
  }

  return {
    upsertNode(spec) {
      const existing = nodes.get(spec.address);
      if (existing === undefined) {
        const node = new NodeState(spec);
        nodes.set(node.address, node);
        account(node, 1);
        index(node);
        return;
      }
      const pools = existing.pools;
      const runtimes = existing.runtimes;
      account(existing, -1);
      try {
        existing.apply(spec);
      } finally {
        account(existing, 1);
      }
      if (sameList(pools, existing.pools) && sameList(runtimes, existing.runtimes)) {
        refreshIdle(existing);
        refresh(existing);
      } else {
        unindex(existing);
        index(existing);
      }
    },

    removeNode(address) {
      const node = nodes.get(address);
      if (node === undefined) return false;
      account(node, -1);
      unindex(node);
      reservations -= node.reservations.size;
      nodes.delete(address);
      return true;
    },

    setOnline(address, online) {
      const node = nodes.get(address);
      if (node === undefined) return false;
      if (node.online !== online) {
        account(node, -1);
        node.online = online;
        account(node, 1);
        refreshIdle(node);
        refresh(node);
      }
      return true;
    },

    place(job, options = {}) {
      const resolved = resolve(job);
      const { requirements, pool, need } = resolved;
      const only = toSet(options.only);
      const exclude = toSet(options.exclude);
      const accept = (node: NodeState): boolean =>
        eligibleNow(node, resolved) && (exclude === undefined || !exclude.has(node.address));
      let best: NodeState | undefined;
      let bestScore = Number.NEGATIVE_INFINITY;
      if (only !== undefined) {
        for (const address of only) {
          const node = nodes.get(address);
          if (node === undefined || !accept(node)) continue;
          const score = node.scoreIn(pool, weights, reference);
          if (score > bestScore) {
            best = node;
            bestScore = score;
          }
        }
      } else {
        const query = {
          need,
          maxPrice: resolved.maxPriceNumber,
          minReputation: requirements.minReputation,
          direct: requirements.directAccess,
        };
        for (const tree of view.trees(pool, requirements.runtime)) {
          const slot = tree.search(query, accept);
          if (slot < 0) continue;
          const score = tree.scoreAt(slot);
          if (score > bestScore) {
            best = tree.memberAt(slot);
            bestScore = score;
          }
        }
      }
      if (best === undefined) {
        // Restricted to a list: walk it; otherwise the index explains without a pass over nodes.
        const verdict =
          only !== undefined
            ? linearVerdict(nodes.values(), resolved, { only, exclude })
            : indexedVerdict(view, resolved, exclude);
        const why = describeVerdict(verdict, resolved);
        return { placed: false, jobId: job.jobId, reason: why.reason, busy: why.busy };
      }
      return commit(best, resolved, bestScore);
    },

    placeForNode(address, candidates) {
      const node = nodes.get(address);
      if (node === undefined) return refusal(`node ${address} is not registered`, false);
      if (node.banned) return refusal(`node ${address} is banned`, false);
      if (!node.online) return refusal(`node ${address} is offline`, false);
      if (node.usedSlots >= node.maxSlots) {
        return refusal(
          `node ${address} has no free slot (${node.usedSlots} of ${node.maxSlots} in use)`,
          true,
        );
      }
      let best: ResolvedJob | undefined;
      let bestJob: SchedulerJob | undefined;
      let seen = 0;
      let busy = false;
      const misfits = new Map<string, number>();
      for (const job of candidates) {
        seen++;
        if (bestJob !== undefined && !outranks(job, bestJob)) continue;
        const resolved = resolve(job);
        const why = misfit(node, resolved);
        if (why !== undefined) {
          misfits.set(why.phrase, (misfits.get(why.phrase) ?? 0) + 1);
          busy ||= why.busy;
          continue;
        }
        best = resolved;
        bestJob = job;
      }
      if (best === undefined) return refusal(explainNodeMisfits(address, seen, misfits), busy);
      return commit(node, best, node.scoreIn(best.pool, weights, reference));
    },

    release(address, jobId) {
      const node = nodes.get(address);
      if (node === undefined || !node.release(jobId)) return false;
      reservations--;
      refresh(node);
      return true;
    },

    node(address) {
      return nodes.get(address)?.snapshot();
    },

    stats() {
      return { nodes: nodes.size, onlineNodes: usable, reservations };
    },
  };
}

function resolve(job: SchedulerJob): ResolvedJob {
  const requirements: JobRequirements = job.requirements;
  return {
    jobId: job.jobId,
    requirements,
    pool: poolOf(requirements.device),
    need: bytesToNumber(requirements.memoryBytes),
    maxPriceNumber:
      requirements.maxPricePerHour === undefined
        ? Number.POSITIVE_INFINITY
        : Number(requirements.maxPricePerHour),
  };
}

/** Every eligibility rule of the module comment, exactly (bigint prices). */
function eligibleNow(node: NodeState, job: ResolvedJob): boolean {
  const { requirements } = job;
  return (
    node.active &&
    (requirements.runtime === "" || node.runtimes.includes(requirements.runtime)) &&
    node.reputation >= requirements.minReputation &&
    (requirements.maxPricePerHour === undefined ||
      !node.asksMoreThan(requirements.maxPricePerHour, job.maxPriceNumber)) &&
    (!requirements.directAccess || node.reachable) &&
    !node.holds(job.jobId) &&
    node.fit(job.pool, job.need) !== NO_FIT
  );
}

function outranks(job: SchedulerJob, than: SchedulerJob): boolean {
  const priority = rank(job.priority);
  const other = rank(than.priority);
  if (priority !== other) return priority > other;
  return job.queuedAtMs < than.queuedAtMs;
}

function rank(priority: JobPriority): number {
  return priority === JobPriority.UNSPECIFIED ? JobPriority.NORMAL : priority;
}

function refusal(reason: string, busy: boolean): NoPlacement {
  return { placed: false, jobId: undefined, reason, busy };
}

function toSet(addresses: Iterable<string> | undefined): ReadonlySet<string> | undefined {
  if (addresses === undefined) return undefined;
  return addresses instanceof Set ? addresses : new Set(addresses);
}

function sameList(a: readonly (string | number)[], b: readonly (string | number)[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}
