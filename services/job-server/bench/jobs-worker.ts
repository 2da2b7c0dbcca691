/**
 * A BullMQ worker process for ./jobs.bench.ts, the baseline beside the bench node
 * (./jobs-node.ts): a Worker on the local Redis with BENCH_SLOTS concurrency whose processor does
 * nothing but return a small result.
 *
 * Timing: `startMs` when the processor is called (the worker has the job in hand), `doneMs` when
 * the worker's "completed" event fires (moveToCompleted has answered: the job is completed in
 * Redis). See ./jobs-common.ts for the clock.
 *
 * Env: BENCH_QUEUE, BENCH_REDIS_HOST, BENCH_REDIS_PORT, BENCH_SLOTS.
 */
import { type Job, Worker } from "bullmq";
import { nowMs, serveParent, tellParent } from "./jobs-common.js";

const queueName = process.env.BENCH_QUEUE ?? "";
const connection = {
  host: process.env.BENCH_REDIS_HOST ?? "127.0.0.1",
  port: Number(process.env.BENCH_REDIS_PORT ?? 6379),
};
const slots = Number(process.env.BENCH_SLOTS ?? 64);
const started = new Map<string, number>();

const worker = new Worker(
  queueName,
  async (job: Job) => {
    started.set(job.id ?? "", nowMs());
    return { ok: true, job: job.id };
  },
  { connection, concurrency: slots },
);
const parent = serveParent(() => worker.close());
worker.on("completed", (job: Job) => {
  const id = job.id ?? "";
  const startMs = started.get(id) ?? Number.NaN;
  started.delete(id);
  parent.done([id, startMs, nowMs()]);
});
worker.on("failed", (job: Job | undefined, error: Error) => {
  tellParent({ type: "failed", id: job?.id ?? "", message: error.message });
});
worker.on("error", (error: Error) => {
  tellParent({ type: "failed", id: "", message: `worker: ${error.message}` });
});
await worker.waitUntilReady();
tellParent({ type: "ready", name: `${queueName}/${process.pid}` });
