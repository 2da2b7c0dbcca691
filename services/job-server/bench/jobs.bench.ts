/**
 * End-to-end no-op jobs (issue #5): jobs/s and submit-to-start latency of the central job server
 * with 1 and 4 node processes, beside BullMQ on the local Redis doing the same work with 1 and 4
 * worker processes, in one run on one machine.
 *
 *   pnpm --filter @tessera/job-server build && pnpm --filter @tessera/job-server bench:jobs
 *   BENCH_JOBS=5000 BENCH_STORES=sqlite,postgres BENCH_NODES=1,4 pnpm --filter @tessera/job-server bench:jobs
 *
 * BullMQ needs a Redis client package (ioredis) that it loads itself; when the workspace does not
 * provide one, point NODE_PATH at a folder that holds it (`npm install --prefix DIR ioredis`,
 * NODE_PATH=DIR/node_modules).
 *
 * Tessera: a real job server process (node dist/main.js; build it first) with its own temporary
 * DATA_DIR (SQLite; with BENCH_STORES containing "postgres", also a fresh PostgreSQL database on
 * BENCH_PG_URL's server, dropped afterwards) and default settings except POW_DIFFICULTY (low,
 * BENCH_POW_DIFFICULTY=8, so the nodes' records seal quickly) and MAX_QUEUED_JOBS_PER_CLIENT
 * (1,000,000, so the client is never refused for having many jobs in flight). Its log goes to a
 * file at LOG_LEVEL=BENCH_LOG_LEVEL (default info, the production default). Node processes:
 * ./jobs-node.ts (registered, sealed record, open assignment stream; per job: accept, upload the
 * result artifact, signed completion, ReportJobResult). The client (this process) submits signed
 * free jobs with SubmitJob.
 * BENCH_NODE_STEPS=full adds what services/compute-node also sends (UpdateJobStatus RUNNING,
 * ReportCompletion). Calls the job server refuses as "replayed or stale nonce" are resent at once
 * and counted ("node resends"; see ./jobs-node.ts for why they happen).
 * BullMQ: a Queue on BENCH_REDIS_HOST:BENCH_REDIS_PORT (as configured; a unique queue name,
 * obliterated after) and worker processes (./jobs-worker.ts) whose processor returns a small
 * result; the client adds jobs with Queue.add (and, as a second figure, Queue.addBulk). Unless
 * BENCH_REDIS_AOF=0, the same again on a private redis-server started for the run with
 * appendfsync always ("redis-aof"), a baseline as durable as the job server's SQLite.
 * Node and worker processes get BENCH_SLOTS (64) jobs at once each (node slots = worker
 * concurrency). BENCH_SYSTEMS=tessera or bullmq runs one side only.
 * Profiling: BENCH_SERVER_NODE_ARGS / BENCH_CHILD_NODE_ARGS pass node flags (e.g. "--cpu-prof
 * --cpu-prof-dir=/tmp/prof") to the job server / the node and worker processes; BENCH_KEEP=1
 * keeps the job server's directory (its log has every RPC with its duration).
 *
 * Phases of each configuration, each with its own jobs (Tessera: its own client key):
 * 1. warm-up: BENCH_WARMUP jobs as in 3, not reported;
 * 2. idle latency: BENCH_LATENCY_JOBS jobs one at a time, the next submitted once the previous
 *    one completed: submit-to-start = from just before SubmitJob / Queue.add is sent to the
 *    node / worker having the job in hand (the Assignment read off the stream / the processor
 *    called), on the machine-wide monotonic clock (./jobs-common.ts); also from the submit's
 *    answer to the start (negative when the job started before the client had its answer);
 * 3. throughput: BENCH_JOBS jobs, BENCH_INFLIGHT (64) submits in flight (the next is sent when
 *    one is answered); jobs/s = jobs / (first submit sent → last job completed as confirmed to
 *    the node or worker: ReportJobResult answered COMPLETED / the worker's "completed" event).
 *    Also "client-seen": until the client learns the last one completed: BullMQ's QueueEvents
 *    "completed" (the Redis event stream), Tessera's ListJobs(state COMPLETED, page size 1)
 *    total count polled every BENCH_POLL_MS (20 ms) once every submit was answered, so it adds
 *    no load while jobs are submitted and overstates the time by up to one poll (StreamJobUpdates
 *    per job would add a signed stream and several reads per job to the server under test).
 *    Start latency under this load (queueing included) is printed as well;
 * 4. BullMQ only: the same with addBulk batches of BENCH_INFLIGHT jobs, one batch in flight.
 * Each child keeps its per-job times in memory and hands them over after the phase, so nothing
 * crosses processes per job while jobs/s is measured (phase 2 reports each job as it completes).
 */
import { type ChildProcess, execFile, execFileSync, fork, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, rmSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import { generateKeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { ContentRefSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { JobSpecSchema, JobState, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { JobService } from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { PROTOCOL_VERSION } from "../src/protocol-version.js";
import { type ChildMessage, type JobRecord, nowMs, quantile } from "./jobs-common.js";

const env = process.env;
const JOBS = Number(env.BENCH_JOBS ?? 2000);
const WARMUP = Number(env.BENCH_WARMUP ?? 200);
const LATENCY_JOBS = Number(env.BENCH_LATENCY_JOBS ?? 300);
const IN_FLIGHT = Number(env.BENCH_INFLIGHT ?? 64);
const SLOTS = Number(env.BENCH_SLOTS ?? 64);
const PROCESS_COUNTS = (env.BENCH_NODES ?? "1,4").split(",").map(Number);
const STORES = (env.BENCH_STORES ?? "sqlite").split(",").filter((s) => s !== "");
const SYSTEMS = new Set((env.BENCH_SYSTEMS ?? "tessera,bullmq").split(","));
const POW_DIFFICULTY = env.BENCH_POW_DIFFICULTY ?? "8";
const NODE_STEPS = env.BENCH_NODE_STEPS === "full" ? "full" : "brief";
const POLL_MS = Number(env.BENCH_POLL_MS ?? 20);
const TIMEOUT_MS = Number(env.BENCH_TIMEOUT_MS ?? 120_000);
const LOG_LEVEL = env.BENCH_LOG_LEVEL ?? "info";
const SERVER_NODE_ARGS = (env.BENCH_SERVER_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
const CHILD_NODE_ARGS = (env.BENCH_CHILD_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
const PG_URL = env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS = {
  host: env.BENCH_REDIS_HOST ?? "127.0.0.1",
  port: Number(env.BENCH_REDIS_PORT ?? 6379),
};
const KEEP = env.BENCH_KEEP === "1";
const DURABLE_REDIS = env.BENCH_REDIS_AOF !== "0";
const AIM_P50_MS = 2;

const here = fileURLToPath(new URL(".", import.meta.url));
const packageDir = join(here, "..");
const serverMain = join(packageDir, "dist", "main.js");
const tsxImport = import.meta.resolve("tsx");

// ---------------------------------------------------------------------------------------------
// Child processes (bench nodes, BullMQ workers)

/** What to undo if this process is interrupted: server processes, scratch directories, databases. */
const servers = new Set<ChildProcess>();
const scratch = new Set<string>();
const databases = new Set<string>();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    for (const server of servers) server.kill("SIGKILL");
    for (const dir of scratch) if (!KEEP) rmSync(dir, { recursive: true, force: true });
    for (const database of databases) {
      try {
        execFileSync("psql", [PG_URL, "-qAtc", `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`]);
      } catch {
        // Reported by psql on stderr; nothing more to do on the way out.
      }
    }
    process.exit(130);
  });
}

/** Whether a resend counter is the most resends of one call (a maximum, not a sum). */
const isMost = (name: string) => name.endsWith("(most for one call)");

/** Forked children of one configuration and the messages they send. */
class Children {
  readonly #procs: ChildProcess[] = [];
  readonly #done: JobRecord[] = [];
  readonly #records = new Map<ChildProcess, JobRecord[]>();
  readonly #wakers = new Set<() => void>();
  #resent: Record<string, number> = {};
  readonly failures: string[] = [];
  #ready = 0;
  #exited = 0;

  /** Forks `count` copies of `script` and waits until each said it is ready. */
  static async fork(
    script: string,
    count: number,
    childEnv: Record<string, string>,
  ): Promise<Children> {
    const children = new Children();
    for (let i = 0; i < count; i++) children.#spawn(script, childEnv);
    try {
      await children.#until(() => children.#ready === count, 30_000, "the children to be ready");
    } catch (error) {
      await children.stop();
      throw error;
    }
    return children;
  }

  #spawn(script: string, childEnv: Record<string, string>): void {
    const child = fork(join(here, script), [], {
      execArgv: [...CHILD_NODE_ARGS, "--import", tsxImport],
      env: { ...env, ...childEnv },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    child.on("message", (message: ChildMessage) => {
      if (message.type === "ready") this.#ready += 1;
      else if (message.type === "done") this.#done.push(message.record);
      else if (message.type === "records") {
        this.#records.set(child, [...message.records]);
        for (const [name, count] of Object.entries(message.resent)) {
          this.#resent[name] = isMost(name)
            ? Math.max(this.#resent[name] ?? 0, count)
            : (this.#resent[name] ?? 0) + count;
        }
      } else if (message.type === "failed") {
        this.failures.push(`${message.id === "" ? "" : `job ${message.id}: `}${message.message}`);
      }
      this.#wake();
    });
    child.on("exit", (code, signal) => {
      this.#exited += 1;
      if (code !== 0) this.failures.push(`${script} exited (${code ?? signal})`);
      this.#wake();
    });
    this.#procs.push(child);
  }

  #wake(): void {
    for (const wake of [...this.#wakers]) wake();
  }

  /** Waits until `ready()`; throws on a child's failure or after `timeoutMs`. */
  async #until(ready: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.failures.length > 0) {
        throw new Error(`a child failed: ${this.failures.slice(0, 3).join("; ")}`);
      }
      if (ready()) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#wakers.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#wakers.add(wake);
      });
    }
  }

  /** Throws when a child reported a failure. */
  check(): void {
    if (this.failures.length > 0) {
      throw new Error(`a child failed: ${this.failures.slice(0, 3).join("; ")}`);
    }
  }

  /** live: children report each job as it completes (see {@link nextDone}). */
  setLive(live: boolean): void {
    for (const child of this.#procs) child.send({ type: "live", live });
  }

  /** The next job reported in live mode. */
  async nextDone(): Promise<JobRecord> {
    await this.#until(() => this.#done.length > 0, TIMEOUT_MS, "a job to complete");
    return this.#done.shift() as JobRecord;
  }

  /** Every record the children kept since the last flush. */
  async flush(): Promise<JobRecord[]> {
    this.#records.clear();
    for (const child of this.#procs) child.send({ type: "flush" });
    await this.#until(
      () => this.#records.size === this.#procs.length,
      TIMEOUT_MS,
      "the children's records",
    );
    return [...this.#records.values()].flat();
  }

  /** Calls the children sent again (nonce refusals) up to the last flush, by name; resets. */
  takeResent(): Record<string, number> {
    const taken = this.#resent;
    this.#resent = {};
    return taken;
  }

  /** Asks every child to stop; kills those still running after 10 s. */
  async stop(): Promise<void> {
    const running = this.#procs.filter((child) => child.exitCode === null && child.connected);
    for (const child of running) child.send({ type: "stop" });
    const all = this.#procs.length;
    try {
      await this.#until(() => this.#exited === all, 10_000, "the children to exit");
    } catch {
      for (const child of this.#procs) if (child.exitCode === null) child.kill("SIGKILL");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The two systems behind one interface

/** One phase's client: its jobs, submitted and watched. */
interface PhaseClient {
  /** Submits job `id`; resolves when the system answered. */
  submit(id: string): Promise<void>;
  /** Submits jobs in one request, when the system has such a request. */
  submitBulk?: (ids: readonly string[]) => Promise<void>;
  /**
   * Starts watching `ids` (call before submitting); resolves with the time the client learned
   * that the last of them completed. `submitted` resolves when every submit was answered.
   */
  completed(ids: ReadonlySet<string>, submitted: Promise<void>): Promise<number>;
  close(): Promise<void>;
}

/** A running system under test with its node or worker processes. */
interface System {
  readonly name: string;
  readonly store: string;
  readonly processes: number;
  readonly children: Children;
  phase(name: string): Promise<PhaseClient>;
  close(): Promise<void>;
}

const execFileAsync = promisify(execFile);

/** Runs `sql` on the PostgreSQL server of `url` with psql. */
async function psql(url: string, sql: string): Promise<void> {
  await execFileAsync("psql", [url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql]);
}

/** Whether any source file of the job server is newer than its build. */
function buildIsStale(): boolean {
  if (!existsSync(serverMain)) return true;
  const built = statSync(join(packageDir, "dist", "server.js")).mtimeMs;
  const walk = (dir: string): boolean =>
    readdirSync(dir, { withFileTypes: true }).some((entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return walk(path);
      return (
        entry.name.endsWith(".ts") &&
        !entry.name.includes(".test.") &&
        statSync(path).mtimeMs > built
      );
    });
  return walk(join(packageDir, "src"));
}

const MODEL = new TextEncoder().encode('{"format":"tessera.sequential/v1","layers":[]}');
const DATASET = new TextEncoder().encode("x,label\n1,0\n2,1\n");

function contentRef(bytes: Uint8Array, mediaType: string) {
  return create(ContentRefSchema, {
    digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
    sizeBytes: BigInt(bytes.length),
    mediaType,
  });
}

/** A free inference job whose inputs the bench node never reads (it does no work). */
function noopSpec(jobId: string) {
  return create(JobSpecSchema, {
    protocolVersion: PROTOCOL_VERSION,
    jobId,
    jobType: JobType.INFERENCE,
    model: {
      modelId: "bench-noop",
      source: "onnx",
      content: contentRef(MODEL, "application/onnx"),
    },
    dataset: contentRef(DATASET, "text/csv"),
  });
}

/** A job server process: its URL and address; `stop` ends it and removes its data. */
async function startJobServer(store: string) {
  const dir = await mkdtemp(join(tmpdir(), "tessera-jobs-bench-"));
  scratch.add(dir);
  const keyFile = join(dir, "key.json");
  const { keyPair } = await loadOrCreateServiceKey({ path: keyFile, name: "job-server" });
  let databaseUrl = "";
  let database = "";
  if (store === "postgres") {
    database = `tessera_bench_${randomBytes(4).toString("hex")}`;
    databases.add(database);
    await psql(PG_URL, `CREATE DATABASE ${database}`);
    const url = new URL(PG_URL);
    url.pathname = `/${database}`;
    databaseUrl = url.toString();
  }
  const logFile = join(dir, "server.log");
  const log = openSync(logFile, "a");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [...SERVER_NODE_ARGS, serverMain], {
    env: {
      ...env,
      HOST: "127.0.0.1",
      PORT: String(port),
      DATA_DIR: join(dir, "data"),
      KEY_FILE: keyFile,
      DATABASE_URL: databaseUrl,
      POW_DIFFICULTY,
      LOG_LEVEL,
      MAX_QUEUED_JOBS_PER_CLIENT: "1000000",
    },
    stdio: ["ignore", log, log],
  });
  servers.add(child);
  closeSync(log);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      servers.delete(child);
      resolve();
    }),
  );
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    if (database !== "") {
      await psql(PG_URL, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      databases.delete(database);
    }
    if (!KEEP) await rm(dir, { recursive: true, force: true });
    scratch.delete(dir);
  };
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the job server exited; see ${logFile}`);
      const healthy = await fetch(`${url}/healthz`).then(
        (response) => response.ok,
        () => false,
      );
      if (healthy) return { url, address: keyPair.address, stop, logFile };
      if (Date.now() > deadline) throw new Error(`the job server did not start; see ${logFile}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A TCP port nothing listens on now (the job server takes it right after). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address === null || typeof address === "string") reject(new Error("no port"));
        else resolve(address.port);
      });
    });
  });
}

/** The job server with `processes` bench nodes. */
async function startTessera(store: string, processes: number): Promise<System> {
  const server = await startJobServer(store);
  let children: Children;
  try {
    children = await Children.fork("jobs-node.ts", processes, {
      JOB_SERVER_URL: server.url,
      JOB_SERVER_ADDRESS: server.address,
      BENCH_POW_DIFFICULTY: POW_DIFFICULTY,
      BENCH_SLOTS: String(SLOTS),
      BENCH_NODE_STEPS: NODE_STEPS,
    });
  } catch (error) {
    await server.stop();
    throw error;
  }
  return {
    name: "tessera",
    store,
    processes,
    children,
    async phase() {
      // A client key of its own: ListJobs then counts this phase's jobs only.
      const session = new Http2SessionManager(server.url);
      const transport = createConnectTransport({
        baseUrl: server.url,
        httpVersion: "2",
        sessionManager: session,
        interceptors: [
          createSigningInterceptor({
            keyPair: generateKeyPair(),
            target: server.address,
            nonceSource: createNonceSource(),
          }),
        ],
      });
      const jobs = createClient(JobService, transport);
      return {
        async submit(id) {
          const answer = await jobs.submitJob({
            protocolVersion: PROTOCOL_VERSION,
            spec: noopSpec(id),
          });
          if (!answer.created) throw new Error(`job ${id} was not created`);
        },
        async completed(ids, submitted) {
          await submitted;
          const deadline = Date.now() + TIMEOUT_MS;
          for (;;) {
            children.check();
            const page = await jobs.listJobs({
              protocolVersion: PROTOCOL_VERSION,
              state: JobState.COMPLETED,
              pageSize: 1,
            });
            if (Number(page.totalCount) >= ids.size) return nowMs();
            if (Date.now() > deadline) {
              throw new Error(`${page.totalCount} of ${ids.size} jobs completed in time`);
            }
            await new Promise((resolve) => setTimeout(resolve, POLL_MS));
          }
        },
        async close() {
          session.abort();
        },
      };
    },
    async close() {
      await children.stop();
      await server.stop();
    },
  };
}

type BullMq = typeof import("bullmq");

/** A Redis server BullMQ runs on. */
interface RedisTarget {
  readonly host: string;
  readonly port: number;
  /** "redis" (the local one, as configured) or "redis-aof" (private, fsync on every write). */
  readonly label: string;
}

/** Whether a Redis server answers PING at `port`. */
function redisAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let reply = "";
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once("error", () => finish(false));
    socket.on("data", (data) => {
      reply += data.toString();
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG"));
    });
    socket.once("connect", () => socket.write("PING\r\n"));
  });
}

/**
 * A private redis-server (BENCH_REDIS_SERVER, default "redis-server" on PATH) on a free port,
 * durable like the job server's SQLite: append-only file with fsync on every write
 * (appendfsync always), no snapshots; its files in a temporary directory removed afterwards.
 * Undefined, with a note, when the binary cannot be started.
 */
async function startDurableRedis(): Promise<(RedisTarget & { stop(): Promise<void> }) | undefined> {
  const dir = await mkdtemp(join(tmpdir(), "tessera-jobs-bench-redis-"));
  scratch.add(dir);
  const port = await freePort();
  const child = spawn(
    env.BENCH_REDIS_SERVER ?? "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "yes",
      "--appendfsync",
      "always",
      "--dir",
      dir,
    ],
    { stdio: "ignore" },
  );
  servers.add(child);
  let failed = false;
  child.once("error", () => {
    failed = true;
  });
  const exited = new Promise<void>((resolve) =>
    child.once("close", () => {
      servers.delete(child);
      resolve();
    }),
  );
  const stop = async () => {
    if (!failed && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
    scratch.delete(dir);
  };
  const deadline = Date.now() + 10_000;
  while (!failed && child.exitCode === null && Date.now() < deadline) {
    if (await redisAnswers(port)) return { host: "127.0.0.1", port, label: "redis-aof", stop };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await stop();
  console.log("(no durable Redis run: redis-server could not be started)");
  return undefined;
}

/** A BullMQ queue on the local Redis with `processes` worker processes. */
async function startBullmq(bullmq: BullMq, redis: RedisTarget, processes: number): Promise<System> {
  const connection = { host: redis.host, port: redis.port };
  const queueName = `tessera-bench-${randomBytes(4).toString("hex")}`;
  const queue = new bullmq.Queue(queueName, { connection });
  const events = new bullmq.QueueEvents(queueName, { connection });
  const cleanup = async () => {
    await events.close();
    await queue.obliterate({ force: true });
    await queue.close();
  };
  let children: Children;
  try {
    await queue.waitUntilReady();
    await events.waitUntilReady();
    children = await Children.fork("jobs-worker.ts", processes, {
      BENCH_QUEUE: queueName,
      BENCH_REDIS_HOST: redis.host,
      BENCH_REDIS_PORT: String(redis.port),
      BENCH_SLOTS: String(SLOTS),
    });
  } catch (error) {
    await cleanup();
    throw error;
  }
  return {
    name: "bullmq",
    store: redis.label,
    processes,
    children,
    async phase() {
      return {
        async submit(id) {
          await queue.add("noop", {}, { jobId: id });
        },
        async submitBulk(ids) {
          await queue.addBulk(ids.map((id) => ({ name: "noop", data: {}, opts: { jobId: id } })));
        },
        completed(ids) {
          return new Promise<number>((resolve, reject) => {
            let seen = 0;
            const timer = setTimeout(() => {
              events.off("completed", onCompleted);
              reject(new Error(`${seen} of ${ids.size} jobs completed in time`));
            }, TIMEOUT_MS);
            const onCompleted = ({ jobId }: { jobId: string }) => {
              if (!ids.has(jobId)) return;
              seen += 1;
              if (seen < ids.size) return;
              const at = nowMs();
              clearTimeout(timer);
              events.off("completed", onCompleted);
              resolve(at);
            };
            events.on("completed", onCompleted);
          });
        },
        async close() {},
      };
    },
    async close() {
      await children.stop();
      await cleanup();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Phases

interface Throughput {
  readonly jobs: number;
  /** First submit sent → last job confirmed completed to its node / worker. */
  readonly jobsPerSecond: number;
  /** First submit sent → the client learned the last one completed. */
  readonly clientJobsPerSecond: number;
  /** First submit sent → last submit answered. */
  readonly submitMs: number;
  /** Submit sent → start, under this load. */
  readonly startP50: number;
  readonly startP99: number;
  /** Node calls sent again after a nonce refusal, by call. */
  readonly resent: Record<string, number>;
}

interface Latency {
  readonly jobs: number;
  /** Submit sent → start. */
  readonly startP50: number;
  readonly startP99: number;
  /** Submit answered → start. */
  readonly ackP50: number;
  readonly ackP99: number;
  /** The submit call alone. */
  readonly submitP50: number;
  readonly submitP99: number;
  readonly resent: Record<string, number>;
}

/**
 * The children's records of `ids`, one per job. The client may learn of the last completion
 * before the child that ran it has recorded it, so this flushes until every job is in.
 */
async function collectRecords(
  system: System,
  ids: ReadonlySet<string>,
): Promise<Map<string, JobRecord>> {
  const records: JobRecord[] = [];
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    records.push(...(await system.children.flush()));
    const seen = new Set(records.map((record) => record[0]).filter((id) => ids.has(id)));
    if (seen.size === ids.size) return matchRecords(records, ids);
    if (Date.now() > deadline) return matchRecords(records, ids);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function matchRecords(
  records: readonly JobRecord[],
  ids: ReadonlySet<string>,
): Map<string, JobRecord> {
  const byId = new Map<string, JobRecord>();
  for (const record of records) {
    if (!ids.has(record[0])) continue;
    if (byId.has(record[0])) throw new Error(`job ${record[0]} was run twice`);
    byId.set(record[0], record);
  }
  if (byId.size !== ids.size) throw new Error(`${byId.size} of ${ids.size} jobs were reported`);
  return byId;
}

async function throughput(
  system: System,
  phase: string,
  jobs: number,
  bulk: boolean,
): Promise<Throughput> {
  const client = await system.phase(phase);
  try {
    const ids = Array.from({ length: jobs }, (_, i) => `${phase}-${i}`);
    const idSet = new Set(ids);
    const sent = new Map<string, number>();
    let markSubmitted = () => {};
    const submitted = new Promise<void>((resolve) => {
      markSubmitted = resolve;
    });
    const completed = client.completed(idSet, submitted);
    completed.catch(() => {});
    const first = nowMs();
    if (bulk) {
      if (client.submitBulk === undefined) throw new Error(`${system.name} has no bulk submit`);
      for (let i = 0; i < ids.length; i += IN_FLIGHT) {
        const batch = ids.slice(i, i + IN_FLIGHT);
        const at = nowMs();
        for (const id of batch) sent.set(id, at);
        await client.submitBulk(batch);
      }
    } else {
      let next = 0;
      const lane = async () => {
        while (next < ids.length) {
          const id = ids[next++] as string;
          sent.set(id, nowMs());
          await client.submit(id);
        }
      };
      await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, ids.length) }, lane));
    }
    const submitMs = nowMs() - first;
    markSubmitted();
    const clientEnd = await completed;
    const records = await collectRecords(system, idSet);
    system.children.check();
    let end = 0;
    const starts: number[] = [];
    for (const [id, record] of records) {
      end = Math.max(end, record[2]);
      starts.push(record[1] - (sent.get(id) as number));
    }
    return {
      jobs,
      jobsPerSecond: jobs / ((end - first) / 1000),
      clientJobsPerSecond: jobs / ((clientEnd - first) / 1000),
      submitMs,
      startP50: quantile(starts, 0.5),
      startP99: quantile(starts, 0.99),
      resent: system.children.takeResent(),
    };
  } finally {
    await client.close();
  }
}

async function latency(system: System, phase: string, jobs: number): Promise<Latency> {
  const client = await system.phase(phase);
  const starts: number[] = [];
  const afterAck: number[] = [];
  const submits: number[] = [];
  system.children.setLive(true);
  try {
    for (let i = 0; i < jobs; i++) {
      const id = `${phase}-${i}`;
      const sent = nowMs();
      await client.submit(id);
      const answered = nowMs();
      const record = await system.children.nextDone();
      if (record[0] !== id) throw new Error(`expected job ${id} to complete, got ${record[0]}`);
      starts.push(record[1] - sent);
      afterAck.push(record[1] - answered);
      submits.push(answered - sent);
    }
  } finally {
    system.children.setLive(false);
    await client.close();
  }
  await system.children.flush();
  return {
    jobs,
    startP50: quantile(starts, 0.5),
    startP99: quantile(starts, 0.99),
    ackP50: quantile(afterAck, 0.5),
    ackP99: quantile(afterAck, 0.99),
    submitP50: quantile(submits, 0.5),
    submitP99: quantile(submits, 0.99),
    resent: system.children.takeResent(),
  };
}

interface Row {
  readonly system: string;
  readonly store: string;
  readonly processes: number;
  readonly submit: "add" | "addBulk" | "SubmitJob";
  readonly throughput: Throughput;
  readonly latency: Latency | undefined;
}

async function measure(system: System): Promise<Row[]> {
  const tag = `${system.name}-${system.store}-${system.processes}`;
  process.stderr.write(`  ${tag}: warm-up (${WARMUP})`);
  if (WARMUP > 0) await throughput(system, "warm", WARMUP, false);
  process.stderr.write(`, idle latency (${LATENCY_JOBS})`);
  const idle = LATENCY_JOBS > 0 ? await latency(system, "lat", LATENCY_JOBS) : undefined;
  process.stderr.write(`, throughput (${JOBS})`);
  const rows: Row[] = [
    {
      system: system.name,
      store: system.store,
      processes: system.processes,
      submit: system.name === "bullmq" ? "add" : "SubmitJob",
      throughput: await throughput(system, "run", JOBS, false),
      latency: idle,
    },
  ];
  if (system.name === "bullmq") {
    process.stderr.write(`, addBulk (${JOBS})`);
    rows.push({
      system: system.name,
      store: system.store,
      processes: system.processes,
      submit: "addBulk",
      throughput: await throughput(system, "bulk", JOBS, true),
      latency: undefined,
    });
  }
  process.stderr.write(" done\n");
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Report

const f = (value: number, digits = 0) =>
  Number.isNaN(value)
    ? "-"
    : value.toLocaleString("en-US", {
        minimumFractionDigits: digits,
        maximumFractionDigits: digits,
      });

const total = (counts: Record<string, number> | undefined) =>
  Object.entries(counts ?? {}).reduce((sum, [name, n]) => (isMost(name) ? sum : sum + n), 0);

function printReport(rows: readonly Row[], redisInfo: string, durable: boolean): void {
  const header = [
    "system",
    "store",
    "procs",
    "submit",
    "N",
    "jobs/s",
    "client-seen jobs/s",
    "submits done ms",
    "idle start p50/p99 ms",
    "idle ack→start p50/p99 ms",
    "submit rpc p50/p99 ms",
    "loaded start p50/p99 ms",
    "node resends",
  ];
  const lines = rows.map((row) => [
    row.system,
    row.store,
    String(row.processes),
    row.submit,
    f(row.throughput.jobs),
    f(row.throughput.jobsPerSecond),
    f(row.throughput.clientJobsPerSecond),
    f(row.throughput.submitMs),
    row.latency ? `${f(row.latency.startP50, 2)} / ${f(row.latency.startP99, 2)}` : "-",
    row.latency ? `${f(row.latency.ackP50, 2)} / ${f(row.latency.ackP99, 2)}` : "-",
    row.latency ? `${f(row.latency.submitP50, 2)} / ${f(row.latency.submitP99, 2)}` : "-",
    `${f(row.throughput.startP50, 1)} / ${f(row.throughput.startP99, 1)}`,
    row.system === "tessera" ? f(total(row.throughput.resent) + total(row.latency?.resent)) : "-",
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...lines.map((l) => (l[i] as string).length)),
  );
  const print = (cells: readonly string[]) =>
    console.log(
      cells
        .map((c, i) => (i < 4 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)))
        .join("  "),
    );
  console.log("");
  print(header);
  for (const line of lines) print(line);
  console.log("");
  for (const row of rows.filter((r) => r.system === "tessera")) {
    const calls = Object.entries(row.throughput.resent).map(([name, n]) => `${name} ${n}`);
    if (calls.length === 0) continue;
    console.log(
      `node resends (${row.store}, ${row.processes} proc, throughput phase): ${calls.join(", ")} ` +
        `— calls refused with "replayed or stale nonce" and sent again at once`,
    );
  }
  console.log(`Redis: ${redisInfo}`);
  if (durable) {
    console.log(
      "redis-aof: a private redis-server started for this run with appendonly yes, appendfsync always, no snapshots",
    );
  }
  console.log("Ratios Tessera / BullMQ (jobs/s: above 1 is Tessera faster; latency: below 1 is):");
  const ratio = (a: number, b: number) => `${f(a / b, 3)}x`;
  for (const processes of PROCESS_COUNTS) {
    for (const tessera of rows.filter((r) => r.system === "tessera" && r.processes === processes)) {
      const t = tessera.throughput;
      console.log(`  ${processes} proc, tessera on ${tessera.store}:`);
      let add: Row | undefined;
      for (const label of ["redis", "redis-aof"]) {
        const of = (submit: string) =>
          rows.find(
            (r) =>
              r.system === "bullmq" &&
              r.store === label &&
              r.processes === processes &&
              r.submit === submit,
          );
        const single = of("add");
        const bulk = of("addBulk");
        if (single === undefined) continue;
        if (label === "redis") add = single;
        const parts = [
          `jobs/s ${ratio(t.jobsPerSecond, single.throughput.jobsPerSecond)} of add`,
          ...(bulk ? [`${ratio(t.jobsPerSecond, bulk.throughput.jobsPerSecond)} of addBulk`] : []),
          `client-seen ${ratio(t.clientJobsPerSecond, single.throughput.clientJobsPerSecond)} of add`,
        ];
        if (tessera.latency && single.latency) {
          parts.push(
            `idle start p50 ${ratio(tessera.latency.startP50, single.latency.startP50)}, ` +
              `p99 ${ratio(tessera.latency.startP99, single.latency.startP99)}`,
          );
        }
        console.log(`    vs BullMQ on ${label}: ${parts.join(", ")}`);
      }
      const aims = [
        add === undefined
          ? "jobs/s >= BullMQ's: no BullMQ run"
          : `jobs/s >= BullMQ's (add, local Redis): ${t.jobsPerSecond >= add.throughput.jobsPerSecond ? "MET" : "MISSED"} (${f(t.jobsPerSecond)} vs ${f(add.throughput.jobsPerSecond)})`,
        tessera.latency === undefined
          ? "p50 start latency: not measured"
          : `idle start p50 <= ${AIM_P50_MS} ms: ${tessera.latency.startP50 <= AIM_P50_MS ? "MET" : "MISSED"} (${f(tessera.latency.startP50, 2)} ms)`,
      ];
      console.log(`    aims: ${aims.join("; ")}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------

/** Loads BullMQ, checks that it reaches Redis, and describes the Redis server. */
async function loadBullmq(): Promise<{ bullmq: BullMq; redisInfo: string }> {
  const bullmq = await import("bullmq");
  // BullMQ loads its Redis client (ioredis) on first use: fail early with a clear message.
  const probe = new bullmq.Queue(`tessera-bench-probe-${randomBytes(4).toString("hex")}`, {
    connection: REDIS,
  });
  try {
    await probe.waitUntilReady();
    const client = (await probe.backend.client) as unknown as {
      info(section: string): Promise<string>;
      config(op: "GET", key: string): Promise<string[]>;
    };
    const version = /redis_version:(\S+)/.exec(await client.info("server"))?.[1] ?? "?";
    const aof = (await client.config("GET", "appendonly"))[1];
    const save = (await client.config("GET", "save"))[1];
    await probe.obliterate({ force: true });
    return {
      bullmq,
      redisInfo: `${version} at ${REDIS.host}:${REDIS.port}, appendonly=${aof}, save="${save}"`,
    };
  } catch (error) {
    throw new Error(
      `BullMQ cannot use Redis at ${REDIS.host}:${REDIS.port} (${(error as Error).message}). ` +
        "If it could not load 'ioredis': run with NODE_PATH pointing at a node_modules that holds " +
        "it (npm install --prefix /tmp/bench-deps ioredis; NODE_PATH=/tmp/bench-deps/node_modules), " +
        "or with BENCH_SYSTEMS=tessera.",
    );
  } finally {
    await probe.close().catch(() => {});
  }
}

async function main(): Promise<void> {
  if (SYSTEMS.has("tessera") && buildIsStale()) {
    throw new Error(
      "services/job-server/dist is missing or older than src: run `pnpm --filter @tessera/job-server build`",
    );
  }
  const loaded = SYSTEMS.has("bullmq") ? await loadBullmq() : undefined;
  const bullmq = loaded?.bullmq;
  const redisInfo = loaded?.redisInfo ?? "not used";
  console.log(
    `jobs bench: node ${process.version}, ${cpus()[0]?.model ?? "?"} (${cpus().length} cores); ` +
      `N=${JOBS}, warm-up ${WARMUP}, idle-latency jobs ${LATENCY_JOBS}, ${IN_FLIGHT} submits in flight, ` +
      `${SLOTS} slots per node / worker concurrency, node steps "${NODE_STEPS}", ` +
      `job server POW_DIFFICULTY=${POW_DIFFICULTY} LOG_LEVEL=${LOG_LEVEL} ` +
      `MAX_QUEUED_JOBS_PER_CLIENT=1000000${SERVER_NODE_ARGS.length > 0 ? ` node ${SERVER_NODE_ARGS.join(" ")}` : ""}`,
  );
  const durableRedis =
    bullmq !== undefined && DURABLE_REDIS ? await startDurableRedis() : undefined;
  const rows: Row[] = [];
  try {
    await runAll(rows, bullmq, durableRedis);
  } finally {
    await durableRedis?.stop();
  }
  printReport(rows, redisInfo, durableRedis !== undefined);
}

async function runAll(
  rows: Row[],
  bullmq: BullMq | undefined,
  durableRedis: RedisTarget | undefined,
): Promise<void> {
  for (const processes of PROCESS_COUNTS) {
    const starts: (() => Promise<System>)[] = [];
    if (SYSTEMS.has("tessera")) {
      for (const store of STORES) starts.push(() => startTessera(store, processes));
    }
    if (bullmq !== undefined) {
      starts.push(() => startBullmq(bullmq, { ...REDIS, label: "redis" }, processes));
      const aof = durableRedis;
      if (aof !== undefined) starts.push(() => startBullmq(bullmq, aof, processes));
    }
    for (const start of starts) {
      const system = await start();
      try {
        rows.push(...(await measure(system)));
      } finally {
        await system.close();
      }
    }
  }
}

await main();
