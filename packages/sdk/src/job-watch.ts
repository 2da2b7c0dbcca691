/**
 * Following a job until it ends: StreamJobUpdates, reopened where it stopped (after_sequence)
 * whenever the stream ends before a terminal state. The job server ends long streams at its
 * deadline limit, and a restart or a lost connection ends them too; none of that is the job's end.
 */
import { setTimeout as delay } from "node:timers/promises";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { JobResult, JobStatus } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type {
  GetJobStatusResponse,
  JobService,
  StreamJobUpdatesResponse,
} from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { isTerminalState } from "./job-names.js";
import { SDK_PROTOCOL_VERSION } from "./protocol-version.js";
import { callOptions } from "./service-client.js";

/** How long one StreamJobUpdates call may stay open before it is reopened: 2 minutes. */
export const DEFAULT_STREAM_TIMEOUT_MS = 120_000;

/**
 * A stream that ends cleanly after being open this long (or half its deadline, if less) without
 * an update ended because the job was quiet, not because something failed: 5 s.
 */
const IDLE_STREAM_MS = 5_000;

/** Reconnections in a row that bring no update before {@link watchJob} gives up: 6. */
export const DEFAULT_MAX_RECONNECTS = 6;

/** How a job ended. */
export interface JobOutcome {
  /** The final status: state COMPLETED, FAILED or CANCELLED. */
  readonly status: JobStatus;
  /** The result, when the job has one (a completed job always does). */
  readonly result: JobResult | undefined;
}

/** Why {@link watchJob} opens another stream. */
export interface ReconnectInfo {
  /**
   * Failed streams in a row, 1-based; 0 when the last stream delivered updates or was merely quiet
   * (open a while, then ended by its deadline).
   */
  readonly failures: number;
  /** The error that ended the last stream; undefined when it ended cleanly or at its deadline. */
  readonly error: ConnectError | undefined;
  /** The sequence the next stream resumes after. */
  readonly afterSequence: bigint;
}

/** Options of {@link watchJob}. */
export interface WatchJobOptions {
  /** Stops watching; watchJob then rejects with the abort reason. */
  readonly signal?: AbortSignal | undefined;
  /** Deadline of each stream; default {@link DEFAULT_STREAM_TIMEOUT_MS}. */
  readonly streamTimeoutMs?: number | undefined;
  /** Resume after this update's sequence; default 0 (start with the current status). */
  readonly afterSequence?: bigint | undefined;
  /** Give up after this many reconnections in a row without an update; default 6. */
  readonly maxReconnects?: number | undefined;
  /** Wait before the first retry after a failure, doubled each time up to 8 s; default 500 ms. */
  readonly retryDelayMs?: number | undefined;
  /** Told before each reopened stream. */
  readonly onReconnect?: ((info: ReconnectInfo) => void) | undefined;
}

/**
 * Codes that end a stream without saying anything about the job: the server went away, the
 * deadline passed, the connection broke. Anything else (not_found, permission_denied,
 * unauthenticated, invalid_argument, ...) is an answer and ends the watch.
 */
const TRANSIENT: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.Internal,
  Code.Unknown,
  Code.Canceled,
  Code.ResourceExhausted,
]);

/**
 * Follows `jobId` until it reaches COMPLETED, FAILED or CANCELLED, calling `onUpdate` with each
 * update once (in sequence order; an update seen before a reconnection is not repeated) and
 * resolving with the final status and result. A stream that ends early is reopened after the last
 * sequence seen: at once when it had delivered updates, ended at its deadline or was simply open a
 * while (a quiet job: it may stay queued for hours); after a growing pause when it failed or
 * ended at once. A stream that ends without news is followed by one GetJobStatus, so a job that
 * ended meanwhile is noticed either way.
 * @throws ConnectError for an answer about the job (not_found, permission_denied, ...) or after
 * `maxReconnects` failed reconnections in a row; the abort reason when `signal` aborts.
 */
export async function watchJob(
  jobs: Client<typeof JobService>,
  jobId: string,
  onUpdate?: ((update: StreamJobUpdatesResponse) => void) | undefined,
  options: WatchJobOptions = {},
): Promise<JobOutcome> {
  const { signal } = options;
  const maxReconnects = options.maxReconnects ?? DEFAULT_MAX_RECONNECTS;
  const retryDelayMs = options.retryDelayMs ?? 500;
  const streamTimeoutMs = options.streamTimeoutMs ?? DEFAULT_STREAM_TIMEOUT_MS;
  let afterSequence = options.afterSequence ?? 0n;
  let failures = 0;
  for (;;) {
    signal?.throwIfAborted();
    let delivered = 0;
    let ended: ConnectError | undefined;
    // Each stream gets its own controller and its own deadline. Connect's deadline timer
    // (timeoutMs) outlives a stream that is left early or aborted while the server is silent and
    // keeps the process alive; ours is cleared as soon as the stream is done. The server
    // learns the deadline from the grpc-timeout header all the same. When the job ends, the
    // stream is aborted and read until it reports the abort rather than left with `return`.
    const streamControl = new AbortController();
    const stopStream = () => streamControl.abort(signal?.reason);
    signal?.addEventListener("abort", stopStream, { once: true });
    const deadline = setTimeout(() => {
      streamControl.abort(
        new ConnectError(`no update within ${streamTimeoutMs} ms`, Code.DeadlineExceeded),
      );
    }, streamTimeoutMs);
    let terminal: StreamJobUpdatesResponse | undefined;
    const openedAt = Date.now();
    try {
      const stream = jobs.streamJobUpdates(
        { protocolVersion: SDK_PROTOCOL_VERSION, jobId, afterSequence },
        {
          signal: streamControl.signal,
          timeoutMs: 0,
          headers: { "grpc-timeout": grpcTimeout(streamTimeoutMs) },
        },
      );
      for await (const update of stream) {
        if (terminal !== undefined) continue;
        if (afterSequence > 0n && update.sequence <= afterSequence) continue;
        afterSequence = update.sequence;
        delivered += 1;
        onUpdate?.(update);
        if (update.status !== undefined && isTerminalState(update.status.state)) {
          terminal = update;
          streamControl.abort();
        }
      }
    } catch (error) {
      if (terminal === undefined) {
        signal?.throwIfAborted();
        const connectError = ConnectError.from(error);
        if (!TRANSIENT.has(connectError.code)) throw connectError;
        ended = connectError;
      }
    } finally {
      clearTimeout(deadline);
      signal?.removeEventListener("abort", stopStream);
      streamControl.abort();
    }
    if (terminal?.status !== undefined) {
      return terminal.result !== undefined
        ? { status: terminal.status, result: terminal.result }
        : outcomeOf(await currentStatus(jobs, jobId, signal), terminal.status);
    }
    // A stream that stayed open a while and then ended (the server closes idle streams before
    // their deadline) is a quiet job, not a failure; only streams that fail or end at once count.
    const quiet =
      ended?.code === Code.DeadlineExceeded ||
      (ended === undefined &&
        Date.now() - openedAt >= Math.min(streamTimeoutMs / 2, IDLE_STREAM_MS));
    if (delivered > 0 || quiet) {
      failures = 0;
    } else {
      failures += 1;
      if (failures > maxReconnects) {
        throw (
          ended ??
          new ConnectError(
            `the job server ended the update stream of job ${jobId} ${failures} times in a row without an update`,
            Code.Unavailable,
          )
        );
      }
    }
    if (delivered === 0) {
      // Nothing new on that stream: ask directly, in case the job ended between streams.
      const status = await currentStatusIfReachable(jobs, jobId, signal);
      if (status?.status !== undefined && isTerminalState(status.status.state)) {
        return outcomeOf(status, status.status);
      }
    }
    options.onReconnect?.({ failures, error: ended, afterSequence });
    if (failures > 0) {
      try {
        await delay(Math.min(retryDelayMs * 2 ** (failures - 1), 8_000), undefined, { signal });
      } catch (error) {
        signal?.throwIfAborted();
        throw error;
      }
    }
  }
}

/**
 * Waits until `jobId` ends, without reporting progress: {@link watchJob} without `onUpdate`.
 * Resolves however the job ended; check `outcome.status.state`.
 */
export function waitForJob(
  jobs: Client<typeof JobService>,
  jobId: string,
  options: WatchJobOptions = {},
): Promise<JobOutcome> {
  return watchJob(jobs, jobId, undefined, options);
}

async function currentStatus(
  jobs: Client<typeof JobService>,
  jobId: string,
  signal: AbortSignal | undefined,
): Promise<GetJobStatusResponse> {
  return jobs.getJobStatus({ protocolVersion: SDK_PROTOCOL_VERSION, jobId }, callOptions(signal));
}

/** The status, or undefined when the server cannot be reached right now; answers are thrown. */
async function currentStatusIfReachable(
  jobs: Client<typeof JobService>,
  jobId: string,
  signal: AbortSignal | undefined,
): Promise<GetJobStatusResponse | undefined> {
  try {
    return await currentStatus(jobs, jobId, signal);
  } catch (error) {
    signal?.throwIfAborted();
    const connectError = ConnectError.from(error);
    if (TRANSIENT.has(connectError.code)) return undefined;
    throw connectError;
  }
}

/** A grpc-timeout header value: at most 8 digits, in milliseconds while they fit, else seconds. */
function grpcTimeout(ms: number): string {
  return ms <= 99_999_999 ? `${ms}m` : `${Math.min(Math.ceil(ms / 1000), 99_999_999)}S`;
}

function outcomeOf(response: GetJobStatusResponse, fallback: JobStatus): JobOutcome {
  const status =
    response.status !== undefined && isTerminalState(response.status.state)
      ? response.status
      : fallback;
  return { status, result: response.result };
}
