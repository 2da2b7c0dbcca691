/**
 * Dynamic batching of one model's concurrent requests (Triton's dynamic batcher, in small):
 * requests queue up; a batch of up to `maxBatchSize` rows runs as soon as it is full, or when
 * its oldest request has waited `maxDelayMs`, or right away when the delay is 0. Inputs are
 * concatenated along dim 0 (the batch), the batch runs once, and every output is split along
 * dim 0 by each request's row count, so each caller gets exactly its own rows.
 *
 * One batch runs at a time (`concurrency` 1 by default): requests that arrive meanwhile build the
 * next batch, which is where batching pays off under load. A request with more rows than
 * `maxBatchSize`, or with scalar inputs, runs alone. An error of a batch rejects every caller in
 * it. Aborting a queued request removes it; aborting one that is running rejects only its caller.
 */
import { concatRows, type RawTensor, rowsOf, splitRows, TensorError } from "./tensors.js";

/** A model's request queue; see the module comment. */
export interface DynamicBatcher {
  /**
   * Runs `inputs` (every input with the same dim 0 ≥ 1) in a batch with concurrent requests and
   * returns this request's rows of every output.
   * @throws TensorError for inputs without a common batch dimension; BatcherClosedError after
   *   close(); the signal's reason when aborted; whatever the batch's run throws.
   */
  run(inputs: readonly RawTensor[], signal?: AbortSignal): Promise<RawTensor[]>;
  /** Rejects queued requests with BatcherClosedError and refuses new ones; safe to call twice. */
  close(): void;
  /** Batches run and rows in them so far. */
  stats(): { batches: number; rows: number };
}

/** Options of {@link createDynamicBatcher}. */
export interface DynamicBatcherOptions {
  /** Most rows of one batch (≥ 1). */
  readonly maxBatchSize: number;
  /** Longest a request waits for others (≥ 0). */
  readonly maxDelayMs: number;
  /** Batches running at once; default 1. */
  readonly concurrency?: number | undefined;
  /** Runs one batch: inputs concatenated along dim 0; every output must have the batch's rows in dim 0. */
  runBatch(inputs: readonly RawTensor[]): Promise<RawTensor[]>;
}

/** The batcher was closed before the request ran. */
export class BatcherClosedError extends Error {
  override readonly name = "BatcherClosedError";
}

interface Pending {
  readonly inputs: readonly RawTensor[];
  /** Rows (1 for scalar inputs). */
  readonly rows: number;
  /** Runs in a batch of its own: more rows than a batch holds, or scalar inputs. */
  readonly alone: boolean;
  /** Names, dtypes and trailing dims: only requests with the same key share a batch. */
  readonly key: string;
  readonly at: number;
  settled: boolean;
  resolve(outputs: RawTensor[]): void;
  reject(error: unknown): void;
  detach(): void;
}

function requestRows(inputs: readonly RawTensor[]): number | undefined {
  if (inputs.length === 0) throw new TensorError("a request has no input tensors");
  if (inputs.some((t) => t.shape.length === 0)) return undefined;
  const first = inputs[0] as RawTensor;
  const rows = rowsOf(first);
  for (const t of inputs) {
    if (rowsOf(t) !== rows) {
      throw new TensorError(
        `tensor "${t.name}": ${rowsOf(t)} rows in dim 0, tensor "${first.name}" has ${rows}; every input needs the same batch`,
      );
    }
  }
  if (rows === 0) throw new TensorError(`tensor "${first.name}": the request has 0 rows`);
  return rows;
}

function keyOf(inputs: readonly RawTensor[]): string {
  return inputs.map((t) => `${t.name}:${t.dtype}:${t.shape.slice(1).join(",")}`).join("|");
}

/** A batcher over `options.runBatch`; see the module comment. */
export function createDynamicBatcher(options: DynamicBatcherOptions): DynamicBatcher {
  const maxBatchSize = Math.max(1, Math.floor(options.maxBatchSize));
  const maxDelayMs = Math.max(0, options.maxDelayMs);
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const queue: Pending[] = [];
  let running = 0;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let batches = 0;
  let rowsRun = 0;

  function settle(p: Pending, outcome: { outputs: RawTensor[] } | { error: unknown }): void {
    if (p.settled) return;
    p.settled = true;
    p.detach();
    if ("outputs" in outcome) p.resolve(outcome.outputs);
    else p.reject(outcome.error);
  }

  /** Rows queued that could share a batch with the oldest request. */
  function joinableRows(oldest: Pending): number {
    let n = 0;
    for (const p of queue) if (p.key === oldest.key && !p.alone) n += p.rows;
    return n;
  }

  /** The requests of the next batch, taken off the queue. */
  function takeBatch(): Pending[] {
    const first = queue.shift() as Pending;
    const batch = [first];
    if (first.alone || first.rows >= maxBatchSize) return batch;
    let rows = first.rows;
    for (let i = 0; i < queue.length; ) {
      const p = queue[i] as Pending;
      if (p.key === first.key && !p.alone && rows + p.rows <= maxBatchSize) {
        batch.push(p);
        rows += p.rows;
        queue.splice(i, 1);
        if (rows === maxBatchSize) break;
      } else {
        i++;
      }
    }
    return batch;
  }

  async function execute(batch: Pending[]): Promise<void> {
    const rows = batch.map((p) => p.rows);
    const total = rows.reduce((n, r) => n + r, 0);
    try {
      const only = batch[0] as Pending;
      const inputs =
        batch.length === 1
          ? only.inputs
          : only.inputs.map((_input, i) => concatRows(batch.map((p) => p.inputs[i] as RawTensor)));
      const outputs = await options.runBatch(inputs);
      batches++;
      rowsRun += total;
      if (batch.length === 1) {
        settle(only, { outputs });
        return;
      }
      const split = outputs.map((t) => splitRows(t, rows));
      batch.forEach((p, i) => {
        settle(p, { outputs: split.map((parts) => parts[i] as RawTensor) });
      });
    } catch (error) {
      for (const p of batch) settle(p, { error });
    }
  }

  function schedule(): void {
    while (running < concurrency && queue.length > 0) {
      const oldest = queue[0] as Pending;
      const waited = Date.now() - oldest.at;
      const ready =
        maxDelayMs === 0 ||
        maxBatchSize === 1 ||
        oldest.alone ||
        joinableRows(oldest) >= maxBatchSize ||
        waited >= maxDelayMs;
      if (!ready) {
        if (timer === undefined) {
          timer = setTimeout(() => {
            timer = undefined;
            schedule();
          }, maxDelayMs - waited);
        }
        return;
      }
      if (timer !== undefined) {
        clearTimeout(timer);
        timer = undefined;
      }
      const batch = takeBatch();
      running++;
      void execute(batch).finally(() => {
        running--;
        schedule();
      });
    }
  }

  return {
    run(inputs, signal) {
      if (closed) return Promise.reject(new BatcherClosedError("the model's batcher is closed"));
      if (signal?.aborted) return Promise.reject(signal.reason);
      let rows: number | undefined;
      try {
        rows = requestRows(inputs);
      } catch (error) {
        return Promise.reject(error);
      }
      return new Promise<RawTensor[]>((resolve, reject) => {
        const onAbort = () => {
          const index = queue.indexOf(pending);
          if (index >= 0) queue.splice(index, 1);
          settle(pending, { error: signal?.reason });
        };
        const pending: Pending = {
          inputs,
          rows: rows ?? 1,
          alone: rows === undefined || rows > maxBatchSize,
          key: keyOf(inputs),
          at: Date.now(),
          settled: false,
          resolve,
          reject,
          detach: () => signal?.removeEventListener("abort", onAbort),
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        queue.push(pending);
        schedule();
      });
    },
    close() {
      if (closed) return;
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      const waiting = queue.splice(0);
      for (const p of waiting) {
        settle(p, { error: new BatcherClosedError("the model's batcher is closed") });
      }
    },
    stats() {
      return { batches, rows: rowsRun };
    },
  };
}
