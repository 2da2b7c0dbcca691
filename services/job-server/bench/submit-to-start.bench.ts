/**
 * Submit-to-start latency of free jobs on a warm job server: a signed client submits jobs one at
 * a time; a node with an open assignment stream (and room for every job) receives each
 * Assignment. The time from sending SubmitJob to the Assignment arriving is measured per job,
 * over the network, on SQLite (default) or PostgreSQL (BENCH_DATABASE_URL). Both processes are
 * this one: client, server and node share the event loop, so the numbers are an upper bound.
 *
 *   pnpm --filter @tessera/job-server bench
 *   BENCH_JOBS=2000 BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test pnpm --filter @tessera/job-server bench
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { createLogger, parseConfig } from "@tessera/runtime";
import { jobServerConfigSpec } from "../src/config.js";
import { startJobServerServer } from "../src/server.js";
import { FAST_ENV, freeSpec, signedClients, TestNode, V1 } from "../src/test-support.js";

const JOBS = Number(process.env.BENCH_JOBS ?? 1000);
const WARMUP = Math.min(200, Math.floor(JOBS / 5));
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? "";

const dataDir = await mkdtemp(join(tmpdir(), "job-server-bench-"));
const keyFile = join(dataDir, "key.json");
const { keyPair } = await loadOrCreateServiceKey({ path: keyFile, name: "job-server" });
const server = await startJobServerServer(
  parseConfig(jobServerConfigSpec, {
    ...FAST_ENV,
    DATA_DIR: dataDir,
    KEY_FILE: keyFile,
    DATABASE_URL,
    DISPATCH_POLL_MS: "1000",
    // The node does not heartbeat here: leases must outlive the run.
    LEASE_TIMEOUT_MS: "600000",
    ACCEPT_TIMEOUT_MS: "600000",
    MAX_QUEUED_JOBS_PER_CLIENT: String(JOBS + WARMUP + 10),
  }),
  createLogger({ service: "bench", level: "silent" }),
  DATABASE_URL === "" ? {} : { storeSchema: `bench_${randomBytes(4).toString("hex")}` },
);
const client = signedClients(server.url, keyPair.address);
const node = new TestNode(server.url, keyPair.address, { maxConcurrentJobs: 100_000 });
try {
  await node.register();
  await node.openStreamReady(100_000);
  const rpc: number[] = [];
  const start: number[] = [];
  const afterAnswer: number[] = [];
  const accepts: Promise<unknown>[] = [];
  for (let i = 0; i < WARMUP + JOBS; i += 1) {
    const jobId = `bench-${i}`;
    const spec = freeSpec(jobId);
    const sent = performance.now();
    let answered = 0;
    const submitted = client.jobs.submitJob({ protocolVersion: V1, spec }).then(() => {
      answered = performance.now();
    });
    const assignment = await node.nextAssignment(10_000);
    const arrived = performance.now();
    await submitted;
    if (assignment.jobId !== jobId) throw new Error(`expected ${jobId}, got ${assignment.jobId}`);
    if (i >= WARMUP) {
      rpc.push(answered - sent);
      start.push(arrived - sent);
      afterAnswer.push(Math.max(0, arrived - answered));
    }
    // The node accepts (as a real node would) outside the measured span.
    accepts.push(node.accept(assignment));
  }
  await Promise.all(accepts);
  const p = (values: number[], q: number) => {
    const sorted = [...values].sort((a, b) => a - b);
    return Number(
      (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(3),
    );
  };
  console.log(
    JSON.stringify({
      store: DATABASE_URL === "" ? "sqlite" : "postgres",
      jobs: JOBS,
      // SubmitJob's round trip: signed request, checks, durable insert, answer.
      submitRpcMs: { p50: p(rpc, 0.5), p90: p(rpc, 0.9), p99: p(rpc, 0.99) },
      // From sending SubmitJob to the Assignment arriving on the node's stream.
      submitToStartMs: { p50: p(start, 0.5), p90: p(start, 0.9), p99: p(start, 0.99) },
      // From the client's answer (the job is durable) to the Assignment arriving (0 when first).
      answerToStartMs: {
        p50: p(afterAnswer, 0.5),
        p90: p(afterAnswer, 0.9),
        p99: p(afterAnswer, 0.99),
      },
    }),
  );
} finally {
  node.close();
  client.close();
  await server.close();
  await rm(dataDir, { recursive: true, force: true });
}
