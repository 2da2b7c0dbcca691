/**
 * The in-memory table of inference tasks: lookup by request id, change notification for
 * subscribers and the dispatcher, the in-flight count behind the gateway's limit, and retention
 * of finished tasks. Tasks live in memory (the low-latency path); money stays safe across a
 * restart because every escrow expires back to its payer.
 */
import { InferenceTaskState } from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { isTerminal, needsNoEscrow, type Task } from "./task.js";

/** Called after a task changed (state, route, result, payment flags). */
export type TaskListener = (task: Task) => void;

/** See the module comment. */
export interface TaskTable {
  get(requestId: string): Task | undefined;
  /** Adds a new task. @throws Error when the id is taken (callers check first, under the lock). */
  insert(task: Task): void;
  /** Records that `task` changed at `nowMs` and tells the listeners. */
  touch(task: Task, nowMs: number): void;
  /** Moves `task` to `state` (stamping when it finished) and tells the listeners. */
  transition(task: Task, state: InferenceTaskState, nowMs: number, errorMessage?: string): void;
  /** Unfinished tasks. */
  inFlight(): number;
  /** Every task, oldest first. */
  all(): Iterable<Task>;
  /** The unfinished tasks (what dispatch and placement look at), oldest first. */
  unfinished(): Iterable<Task>;
  /** Listens to every change; returns the function that stops listening. */
  onChange(listener: TaskListener): () => void;
  /** Listens to one task's changes; returns the function that stops listening. */
  watch(requestId: string, listener: TaskListener): () => void;
  /** Drops finished, settled tasks that finished `retentionMs` or more before `nowMs`. */
  dropRetired(nowMs: number, retentionMs: number): number;
}

/** An empty {@link TaskTable}. */
export function createTaskTable(): TaskTable {
  const tasks = new Map<string, Task>();
  const listeners = new Set<TaskListener>();
  const watchers = new Map<string, Set<TaskListener>>();
  const open = new Set<Task>();

  const notify = (task: Task) => {
    for (const listener of [...listeners]) listener(task);
    for (const listener of [...(watchers.get(task.requestId) ?? [])]) listener(task);
  };

  return {
    get: (requestId) => tasks.get(requestId),
    insert(task) {
      if (tasks.has(task.requestId)) throw new Error(`task ${task.requestId} exists`);
      tasks.set(task.requestId, task);
      if (!isTerminal(task.state)) open.add(task);
      notify(task);
    },
    touch(task, nowMs) {
      task.updatedAtMs = nowMs;
      notify(task);
    },
    transition(task, state, nowMs, errorMessage) {
      const wasTerminal = isTerminal(task.state);
      task.state = state;
      task.updatedAtMs = nowMs;
      if (errorMessage !== undefined) task.errorMessage = errorMessage;
      if (!wasTerminal && isTerminal(state)) {
        open.delete(task);
        task.finishedAtMs = nowMs;
      }
      notify(task);
    },
    inFlight: () => open.size,
    all: () => tasks.values(),
    unfinished: () => open.values(),
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    watch(requestId, listener) {
      let set = watchers.get(requestId);
      if (set === undefined) {
        set = new Set();
        watchers.set(requestId, set);
      }
      set.add(listener);
      return () => {
        set.delete(listener);
        if (set.size === 0 && watchers.get(requestId) === set) watchers.delete(requestId);
      };
    },
    dropRetired(nowMs, retentionMs) {
      let dropped = 0;
      for (const [id, task] of tasks) {
        const done = task.finishedAtMs;
        if (done === undefined || nowMs - done < retentionMs) continue;
        if (task.settlement !== "none" && !task.settled) continue;
        tasks.delete(id);
        dropped += 1;
      }
      return dropped;
    },
  };
}

/** Whether a queued task may go to a node now: paid and confirmed (or free, or approved at price 0), routed, in time. */
export function isDispatchable(task: Task, nowMs: number): boolean {
  return (
    task.state === InferenceTaskState.QUEUED &&
    !task.needsRoute &&
    (!task.paid || task.payment !== undefined || needsNoEscrow(task)) &&
    nowMs < task.deadlineMs
  );
}
