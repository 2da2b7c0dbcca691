/**
 * The {@link Verdict} for a job nobody can take, read from the index instead of a pass over every
 * node: counters answer the online, device and runtime filters; the idle layer of the bucket trees
 * (what each online node offers, load aside) answers the others with pruned searches. It gives the
 * same verdict as `linearVerdict` over all nodes (the property test checks this against a model).
 */
import type { BucketQuery, BucketTree } from "./bucket-tree.js";
import type { ResolvedJob, Verdict } from "./explain.js";
import type { NodeState } from "./node-state.js";

/** What the verdict reads from the scheduler's index. */
export interface IndexView {
  /** Registered nodes. */
  readonly registered: number;
  /** Online, unbanned nodes. */
  readonly usable: number;
  /** Online but banned nodes. */
  readonly bannedOnline: number;
  /** Online, unbanned nodes with memory of `pool` (every usable node for host RAM). */
  usableWithPool(pool: number): number;
  /** The bucket trees of `pool` and `runtime` (every runtime of the pool for ""). */
  trees(pool: number, runtime: string): readonly BucketTree<NodeState>[];
  /** A registered node. */
  node(address: string): NodeState | undefined;
}

/** The verdict for `job`, which the index could not place, with `exclude` nodes left out. */
export function indexedVerdict(
  view: IndexView,
  job: ResolvedJob,
  exclude: ReadonlySet<string> | undefined,
): Verdict {
  const { requirements, pool, need } = job;
  if (view.registered === 0) return { stage: "unregistered" };
  if (view.usable === 0) {
    return { stage: "offline", registered: view.registered, banned: view.bannedOnline };
  }
  // Excluded usable nodes are few: count them against each filter by hand.
  const excluded: NodeState[] = [];
  for (const address of exclude ?? []) {
    const node = view.node(address);
    if (node?.online && !node.banned) excluded.push(node);
  }
  if (view.usable - excluded.length === 0) return { stage: "unselected", online: view.usable };
  const withPool = view.usableWithPool(pool) - excluded.filter((node) => node.hasPool(pool)).length;
  if (withPool === 0) return { stage: "device" };
  const trees = view.trees(pool, requirements.runtime);
  const candidates =
    requirements.runtime === ""
      ? withPool
      : (trees[0]?.usable ?? 0) -
        excluded.filter(
          (node) => node.hasPool(pool) && node.runtimes.includes(requirements.runtime),
        ).length;
  if (candidates === 0) return { stage: "runtime" };

  const selected = (node: NodeState): boolean =>
    exclude === undefined || !exclude.has(node.address);
  const affordable = (node: NodeState): boolean =>
    selected(node) &&
    (requirements.maxPricePerHour === undefined ||
      !node.asksMoreThan(requirements.maxPricePerHour, job.maxPriceNumber));
  const any: BucketQuery = {
    need: Number.NEGATIVE_INFINITY,
    maxPrice: Number.POSITIVE_INFINITY,
    minReputation: Number.NEGATIVE_INFINITY,
    direct: false,
  };
  const reputable = { ...any, minReputation: requirements.minReputation };
  if (!someCapable(trees, reputable, selected)) {
    const best = bestOf(trees, any, selected, "reputation");
    return { stage: "reputation", candidates, bestReputation: best?.reputation ?? 0 };
  }
  const cheapEnough = { ...reputable, maxPrice: job.maxPriceNumber };
  if (!someCapable(trees, cheapEnough, affordable)) {
    const cheapest = bestOf(trees, reputable, selected, "cheapest");
    return { stage: "price", candidates, cheapest: cheapest?.price ?? 0n };
  }
  const reachable = { ...cheapEnough, direct: requirements.directAccess };
  if (!someCapable(trees, reachable, affordable)) return { stage: "direct", candidates };
  const bigEnough = { ...reachable, need };
  if (!someCapable(trees, bigEnough, affordable)) {
    const largest = bestOf(trees, reachable, affordable, "memory", pool);
    return { stage: "memory", candidates, largest: largest?.capacityIn(pool) ?? 0 };
  }
  if (!someCapable(trees, bigEnough, (node) => affordable(node) && !node.holds(job.jobId))) {
    return { stage: "holds" };
  }
  return { stage: "busy" };
}

function someCapable(
  trees: readonly BucketTree<NodeState>[],
  query: BucketQuery,
  accept: (node: NodeState) => boolean,
): boolean {
  return trees.some((tree) => tree.anyCapable(query, accept));
}

/** The best node across `trees` (a node may sit in several: one tree per runtime). */
function bestOf(
  trees: readonly BucketTree<NodeState>[],
  query: BucketQuery,
  accept: (node: NodeState) => boolean,
  by: "reputation" | "cheapest" | "memory",
  pool = 0,
): NodeState | undefined {
  let best: NodeState | undefined;
  for (const tree of trees) {
    const node = tree.bestIdle(query, accept, by);
    if (node === undefined) continue;
    const better =
      best === undefined ||
      (by === "reputation"
        ? node.reputation > best.reputation
        : by === "cheapest"
          ? node.price < best.price
          : node.capacityIn(pool) > best.capacityIn(pool));
    if (better) best = node;
  }
  return best;
}
