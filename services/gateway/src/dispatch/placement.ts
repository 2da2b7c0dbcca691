/**
 * Where a task goes: the least-loaded online node that hosts its model, preferring nodes with an
 * open task stream and skipping nodes that already lost or failed the task.
 */
import { InferenceTaskState } from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import type { GatewayNode, NodeBook } from "../nodes/node-book.js";
import type { Task } from "../tasks/task.js";
import type { TaskTable } from "../tasks/task-table.js";

/** Unfinished tasks routed to each node (queued for it, running on it or being validated). */
export function nodeLoads(tasks: TaskTable): Map<string, number> {
  const loads = new Map<string, number>();
  for (const task of tasks.unfinished()) {
    if (task.nodeAddress === "") continue;
    if (
      task.state === InferenceTaskState.PROCESSING ||
      task.state === InferenceTaskState.AWAITING_PAYMENT ||
      (task.state === InferenceTaskState.QUEUED && !task.needsRoute)
    ) {
      loads.set(task.nodeAddress, (loads.get(task.nodeAddress) ?? 0) + 1);
    }
  }
  return loads;
}

/** Whether `node` can be sent tasks on `modelId` right now. */
export function canReceive(node: GatewayNode, modelId: string, online: boolean): boolean {
  const stream = node.stream;
  return (
    online &&
    stream?.open === true &&
    node.accepted.has(modelId) &&
    (stream.modelIds.size === 0 || stream.modelIds.has(modelId))
  );
}

/** Options of {@link pickNode}. */
export interface PickOptions {
  readonly nodes: NodeBook;
  readonly loads: ReadonlyMap<string, number>;
  readonly nowMs: number;
  /** Only nodes with an open stream (dispatch) rather than any online node (approval). */
  readonly streamRequired: boolean;
  /** When no other node qualifies, fall back to nodes that lost the task but are back. */
  readonly allowExcluded?: boolean;
}

/**
 * The least-loaded eligible node for `task` (ties by address), not among its excluded nodes
 * unless `allowExcluded` and no other qualifies; undefined when none qualifies.
 */
export function pickNode(task: Task, options: PickOptions): GatewayNode | undefined {
  const eligible = options.nodes.all().filter((node) => {
    const online = options.nodes.isOnline(node, options.nowMs);
    if (options.streamRequired) return canReceive(node, task.modelId, online);
    return online && node.accepted.has(task.modelId);
  });
  const fresh = eligible.filter((node) => !task.excludedNodes.has(node.address));
  const candidates = fresh.length > 0 || options.allowExcluded !== true ? fresh : eligible;
  const withStream = candidates.filter((node) => node.stream?.open === true);
  const pool = withStream.length > 0 ? withStream : candidates;
  let best: GatewayNode | undefined;
  let bestLoad = Number.POSITIVE_INFINITY;
  for (const node of pool) {
    const load = options.loads.get(node.address) ?? 0;
    if (load < bestLoad) {
      best = node;
      bestLoad = load;
    }
  }
  return best;
}
