/**
 * Sends queued tasks to nodes. A round looks at every dispatchable task (queued, paid or free,
 * routed, before its deadline), sends a paid task to its approved node and a free one to the
 * least-loaded node hosting its model, and gathers the tasks for one node and model into one
 * delivery of up to that stream's max_batch_size (dynamic batching across clients). Rounds are
 * synchronous, so they never interleave with a task's transition.
 */
import { create } from "@bufbuild/protobuf";
import { ReceiveTaskResponseSchema } from "@tessera/proto/tessera/gateway/v1/gateway_compute_service_pb.js";
import { InferenceTaskState } from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import type { Logger } from "@tessera/runtime";
import type { NodeBook } from "../nodes/node-book.js";
import type { Task } from "../tasks/task.js";
import { taskForNode } from "../tasks/task-status.js";
import { isDispatchable, type TaskTable } from "../tasks/task-table.js";
import { canReceive, nodeLoads, pickNode } from "./placement.js";

/** See the module comment. */
export interface Dispatcher {
  /** Schedules a round soon (coalesced: many wakes, one round). */
  wake(): void;
  /** Runs a round now; resolves to the number of tasks sent. */
  round(): number;
  /** Stops scheduling rounds. */
  close(): void;
}

/** Options of {@link createDispatcher}. */
export interface DispatcherOptions {
  readonly tasks: TaskTable;
  readonly nodes: NodeBook;
  readonly now: () => number;
  readonly logger: Logger;
}

/** A {@link Dispatcher} over `tasks` and `nodes`. */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const { tasks, nodes, now, logger } = options;
  let scheduled = false;
  let closed = false;

  const round = (): number => {
    const nowMs = now();
    const loads = nodeLoads(tasks);
    const queued = [...tasks.unfinished()]
      .filter((task) => isDispatchable(task, nowMs))
      .sort((a, b) => a.createdAtMs - b.createdAtMs);
    // node address -> model id -> tasks, in arrival order
    const groups = new Map<string, Map<string, Task[]>>();
    for (const task of queued) {
      let address = task.nodeAddress;
      if (task.paid) {
        const node = nodes.get(address);
        if (node === undefined || !canReceive(node, task.modelId, nodes.isOnline(node, nowMs))) {
          continue;
        }
      } else {
        const node = pickNode(task, {
          nodes,
          loads,
          nowMs,
          streamRequired: true,
          allowExcluded: true,
        });
        if (node === undefined) continue;
        address = node.address;
        loads.set(address, (loads.get(address) ?? 0) + 1);
      }
      const byModel = groups.get(address) ?? new Map<string, Task[]>();
      groups.set(address, byModel);
      const list = byModel.get(task.modelId) ?? [];
      byModel.set(task.modelId, list);
      list.push(task);
    }
    let sent = 0;
    for (const [address, byModel] of groups) {
      const stream = nodes.get(address)?.stream;
      if (stream === undefined) continue;
      for (const [modelId, list] of byModel) {
        for (let at = 0; at < list.length; at += stream.maxBatchSize) {
          const batch = list.slice(at, at + stream.maxBatchSize);
          const before = batch.map((task) => task.nodeAddress);
          for (const task of batch) {
            task.nodeAddress = address;
            task.assignedAtMs = nowMs;
          }
          const delivered = stream.send(
            create(ReceiveTaskResponseSchema, { tasks: batch.map(taskForNode) }),
          );
          if (!delivered) {
            batch.forEach((task, i) => {
              task.nodeAddress = before[i] ?? "";
              task.assignedAtMs = undefined;
            });
            break;
          }
          const node = nodes.get(address);
          for (const task of batch) {
            // A node that lost a task and got it back must not be told to stop it.
            node?.cancelled.delete(task.requestId);
            tasks.transition(task, InferenceTaskState.PROCESSING, nowMs);
          }
          sent += batch.length;
          logger.debug({ node: address, modelId, tasks: batch.length }, "tasks sent");
        }
      }
    }
    return sent;
  };

  return {
    wake() {
      if (scheduled || closed) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        if (!closed) round();
      });
    },
    round,
    close() {
      closed = true;
    },
  };
}
