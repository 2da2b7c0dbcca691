/**
 * Runs one job in its own worker process (./job-worker.ts) and enforces its limits for real:
 * the process is killed when it runs past its time limit or when its resident memory passes its
 * memory limit (polled from /proc/<pid>/status, with the worker's own reports as a fallback, and
 * V8's heap capped by --max-old-space-size). A crash of the worker fails that job only.
 */
import { type ChildProcess, fork } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { toBinary } from "@bufbuild/protobuf";
import { type JobSpec, JobSpecSchema } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type {
  FromWorker,
  ToWorker,
  WorkerArtifact,
  WorkerJobInput,
  WorkerProgress,
} from "./worker-messages.js";

/** A job's inputs as local files. */
export interface LocalJobInput {
  readonly spec: JobSpec;
  readonly modelPath?: string | undefined;
  readonly modelMediaType?: string | undefined;
  readonly datasetPath?: string | undefined;
  readonly datasetMediaType?: string | undefined;
  readonly initialWeightsPath?: string | undefined;
}

/** Options of {@link runJobInProcess}. */
export interface JobProcessOptions {
  readonly input: LocalJobInput;
  /** Directory the job writes its outputs to (it exists). */
  readonly workDir: string;
  /** Wall-clock limit; the worker is killed after it. */
  readonly maxDurationMs: number;
  /** Resident memory limit; the worker is killed above it. */
  readonly maxMemoryBytes: number;
  /** Receives each progress sample. */
  readonly onProgress?: ((event: WorkerProgress) => void) | undefined;
  /** Cancels the job: the worker is asked to stop, and killed after `cancelGraceMs`. */
  readonly signal?: AbortSignal | undefined;
  /** How long a cancelled worker may take to stop; default 5,000 ms. */
  readonly cancelGraceMs?: number | undefined;
  /** How often the worker's memory is read; default 100 ms. */
  readonly memoryPollMs?: number | undefined;
}

/** How a job's run ended. */
export type JobProcessOutcome =
  | {
      readonly kind: "completed";
      readonly artifacts: readonly WorkerArtifact[];
      readonly finalMetrics: Readonly<Record<string, number>>;
      /** Wall-clock time of the run. */
      readonly elapsedMs: number;
    }
  | {
      readonly kind: "failed";
      readonly reason: JobProcessFailure;
      /** For the job's owner: what went wrong, without payloads. */
      readonly message: string;
      readonly elapsedMs: number;
    }
  | { readonly kind: "cancelled"; readonly elapsedMs: number };

/** Why a run failed. */
export type JobProcessFailure =
  | "invalid_input"
  | "time_limit_exceeded"
  | "memory_limit_exceeded"
  | "node_error";

const MIB = 1024 * 1024;
/** setTimeout's longest delay (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Bytes of the worker's stderr kept for the failure message. */
const STDERR_TAIL_BYTES = 4096;
const HEAP_EXHAUSTED = /heap out of memory|Reached heap limit|Allocation failed/i;

/** The worker entry next to this file: job-worker.js when built, job-worker.ts under tsx. */
const workerEntry = fileURLToPath(
  new URL(import.meta.url.endsWith(".ts") ? "./job-worker.ts" : "./job-worker.js", import.meta.url),
);

/**
 * Node options the worker inherits: only module loaders (so tests under tsx run the .ts worker),
 * never the parent's own heap limits or test flags.
 */
function inheritedExecArgv(): string[] {
  const kept: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (/^--(import|require|loader|experimental-loader)=/.test(arg)) kept.push(arg);
    else if (/^(--import|--require|-r|--loader|--experimental-loader)$/.test(arg)) {
      const value = argv[i + 1];
      if (value !== undefined) kept.push(arg, value);
      i++;
    }
  }
  return kept;
}

/** Resident set size of a live process in bytes from /proc, or undefined where there is none. */
export async function residentBytes(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match?.[1] === undefined ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

function ignoreSendError(): void {
  // See `send` in runJobInProcess.
}

function formatBytes(bytes: number): string {
  return `${Math.round(bytes / MIB)} MiB`;
}

/**
 * Runs the job in a fresh worker process and resolves with how it ended; never rejects for
 * anything the job does. Limits are checked from this process, so a worker stuck in a long
 * synchronous computation is stopped all the same. The time limit counts from the worker's
 * start (loading the executors included).
 */
export function runJobInProcess(options: JobProcessOptions): Promise<JobProcessOutcome> {
  if (options.signal?.aborted) return Promise.resolve({ kind: "cancelled", elapsedMs: 0 });
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const heapMiB = Math.max(32, Math.floor(options.maxMemoryBytes / MIB));
  const child: ChildProcess = fork(workerEntry, [], {
    execArgv: [...inheritedExecArgv(), `--max-old-space-size=${heapMiB}`],
    serialization: "advanced",
    stdio: ["ignore", "ignore", "pipe", "ipc"],
    env: { ...process.env, NODE_OPTIONS: "" },
  });

  return new Promise<JobProcessOutcome>((resolve) => {
    let result: Extract<FromWorker, { type: "result" }> | undefined;
    let killedFor: "time_limit_exceeded" | "memory_limit_exceeded" | undefined;
    let killDetail = "";
    let cancelled = false;
    let stderrTail = "";
    let pollBusy = false;
    let graceTimer: NodeJS.Timeout | undefined;

    const kill = (why: "time_limit_exceeded" | "memory_limit_exceeded", detail: string) => {
      if (killedFor !== undefined || result !== undefined || child.exitCode !== null) return;
      killedFor = why;
      killDetail = detail;
      child.kill("SIGKILL");
    };
    const checkMemory = (rss: number) => {
      if (rss > options.maxMemoryBytes) {
        kill(
          "memory_limit_exceeded",
          `the job used ${formatBytes(rss)}, over its memory limit of ${formatBytes(options.maxMemoryBytes)}`,
        );
      }
    };

    const deadline = setTimeout(
      () =>
        kill(
          "time_limit_exceeded",
          `the job ran longer than its time limit of ${options.maxDurationMs} ms`,
        ),
      Math.min(Math.max(0, options.maxDurationMs), MAX_TIMER_MS),
    );
    const poll = setInterval(() => {
      if (pollBusy || child.pid === undefined) return;
      pollBusy = true;
      void residentBytes(child.pid).then((rss) => {
        pollBusy = false;
        if (rss !== undefined) checkMemory(rss);
      });
    }, options.memoryPollMs ?? 100);

    const onAbort = () => {
      if (cancelled || result !== undefined) return;
      cancelled = true;
      send({ type: "cancel" });
      graceTimer = setTimeout(() => child.kill("SIGKILL"), options.cancelGraceMs ?? 5000);
    };
    const send = (message: ToWorker) => {
      // A worker that already exited cannot take the message; its "close" settles the run.
      if (child.connected) child.send(message, ignoreSendError);
    };

    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
    });
    child.on("message", (message: FromWorker) => {
      if (message.type === "progress") options.onProgress?.(message.event);
      else if (message.type === "memory") checkMemory(message.rssBytes);
      else if (message.type === "result") result ??= message;
    });
    // Spawn failures (e.g. EAGAIN) end in "close" too; the error only needs to not be thrown.
    child.on("error", (error) => {
      stderrTail = `${stderrTail}\n${error.message}`.slice(-STDERR_TAIL_BYTES);
    });
    child.on("close", (code, signal) => {
      clearTimeout(deadline);
      clearTimeout(graceTimer);
      clearInterval(poll);
      options.signal?.removeEventListener("abort", onAbort);
      const ms = elapsed();
      if (killedFor !== undefined) {
        return resolve({ kind: "failed", reason: killedFor, message: killDetail, elapsedMs: ms });
      }
      if (result?.ok === true) {
        return resolve({
          kind: "completed",
          artifacts: result.artifacts,
          finalMetrics: result.finalMetrics,
          elapsedMs: ms,
        });
      }
      if (cancelled) return resolve({ kind: "cancelled", elapsedMs: ms });
      if (result !== undefined) {
        return resolve({
          kind: "failed",
          reason: result.kind === "invalid_input" ? "invalid_input" : "node_error",
          message: result.message,
          elapsedMs: ms,
        });
      }
      if (HEAP_EXHAUSTED.test(stderrTail)) {
        return resolve({
          kind: "failed",
          reason: "memory_limit_exceeded",
          message: `the job ran out of its memory limit of ${formatBytes(options.maxMemoryBytes)} (heap exhausted)`,
          elapsedMs: ms,
        });
      }
      const how = signal === null ? `exit code ${code}` : `signal ${signal}`;
      const lastLine = stderrTail.trim().split("\n").at(-1) ?? "";
      resolve({
        kind: "failed",
        reason: "node_error",
        message: `the job's worker process ended with ${how}${lastLine === "" ? "" : `: ${lastLine}`}`,
        elapsedMs: ms,
      });
    });

    options.signal?.addEventListener("abort", onAbort, { once: true });

    const input: WorkerJobInput = {
      specBinary: toBinary(JobSpecSchema, options.input.spec),
      modelPath: options.input.modelPath,
      modelMediaType: options.input.modelMediaType,
      datasetPath: options.input.datasetPath,
      datasetMediaType: options.input.datasetMediaType,
      initialWeightsPath: options.input.initialWeightsPath,
    };
    send({ type: "start", input, workDir: options.workDir });
  });
}
