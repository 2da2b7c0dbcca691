/**
 * One node's open ReceiveTask stream as the dispatcher sees it: a queue of deliveries the
 * handler drains into the HTTP response, closed when the node goes away, a newer stream replaces
 * it (ABORTED) or the gateway shuts down.
 */
import type { ReceiveTaskResponse } from "@tessera/proto/tessera/gateway/v1/gateway_compute_service_pb.js";

/** See the module comment. */
export interface TaskStream {
  /** Models the node asked tasks for; empty means all its accepted models. */
  readonly modelIds: ReadonlySet<string>;
  /** Most tasks per delivery (1-256). */
  readonly maxBatchSize: number;
  /** Whether deliveries still go anywhere. */
  readonly open: boolean;
  /** Queues a delivery; false when the stream is closed (the caller keeps the tasks). */
  send(delivery: ReceiveTaskResponse): boolean;
  /** Ends the stream: the handler returns, or throws `error` when given. Safe to call twice. */
  close(error?: Error): void;
  /** Takes the deliveries queued but never handed to the node (after it closed). */
  takeUndelivered(): ReceiveTaskResponse[];
  /** The deliveries, in order, until the stream closes or `signal` aborts. */
  deliveries(signal: AbortSignal): AsyncGenerator<ReceiveTaskResponse>;
}

/** A new open {@link TaskStream}. */
export function createTaskStream(options: {
  modelIds: readonly string[];
  maxBatchSize: number;
}): TaskStream {
  const queue: ReceiveTaskResponse[] = [];
  let wake: (() => void) | undefined;
  let open = true;
  let failure: Error | undefined;
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  return {
    modelIds: new Set(options.modelIds),
    maxBatchSize: options.maxBatchSize,
    get open() {
      return open;
    },
    send(delivery) {
      if (!open) return false;
      queue.push(delivery);
      poke();
      return true;
    },
    close(error) {
      if (!open) return;
      open = false;
      failure = error;
      poke();
    },
    takeUndelivered() {
      return queue.splice(0);
    },
    async *deliveries(signal) {
      const onAbort = () => poke();
      signal.addEventListener("abort", onAbort);
      try {
        // A closed or abandoned stream stops at once: what is still queued never reached the
        // node, and takeUndelivered() hands it back.
        while (open && !signal.aborted) {
          const next = queue.shift();
          if (next !== undefined) {
            yield next;
            continue;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
        if (failure !== undefined) throw failure;
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    },
  };
}
