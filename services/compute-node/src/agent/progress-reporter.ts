/**
 * Forwards a running job's progress to the job server (NodeService.ReportProgress) without
 * flooding it: samples are merged (latest fraction, epoch and counts; latest value per metric;
 * log lines in order) and sent at most once per interval, one call at a time.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { LogLevel, type LogLine, LogLineSchema } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { ReportProgressRequestSchema } from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import type { WorkerProgress } from "../runner/worker-messages.js";

/** The progress part of a ReportProgressRequest (the caller adds node, job and lease). */
export type ProgressReport = Pick<
  MessageInitShape<typeof ReportProgressRequestSchema>,
  "progress" | "currentEpoch" | "metrics" | "logs" | "samplesProcessed" | "totalSamples"
>;

/** Options of {@link ProgressReporter}. */
export interface ProgressReporterOptions {
  /** Sends one report; resolves with the server's `should_continue`. */
  readonly send: (report: ProgressReport) => Promise<boolean>;
  /** Called once when the server says to stop, or `send` fails for good (the lease is gone). */
  readonly onStop: (reason: string) => void;
  /** Called when a report fails but the job goes on. */
  readonly onError?: ((error: unknown) => void) | undefined;
  /** Whether a failed send means the lease is gone; default never. */
  readonly isFatal?: ((error: unknown) => boolean) | undefined;
  /** Least time between two reports; default 1,000 ms. */
  readonly minIntervalMs?: number | undefined;
}

/** Most log lines in one report (the protocol's limit). */
export const MAX_LOGS_PER_REPORT = 100;
/** Most log lines kept waiting; older ones are dropped first when a job logs faster than that. */
const MAX_PENDING_LOGS = 1000;
/** Longest log message in UTF-8 bytes (the protocol's limit). */
const MAX_LOG_BYTES = 4096;

const levels: Readonly<Record<string, LogLevel>> = {
  debug: LogLevel.DEBUG,
  info: LogLevel.INFO,
  warn: LogLevel.WARNING,
  warning: LogLevel.WARNING,
  error: LogLevel.ERROR,
};

/** `text` cut to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let end = Math.min(text.length, maxBytes);
  while (end > 0 && Buffer.byteLength(text.slice(0, end)) > maxBytes) end--;
  // Do not leave half of a surrogate pair behind.
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return text.slice(0, end);
}

/** Merges progress samples and sends them as rate-limited reports. */
export class ProgressReporter {
  readonly #options: ProgressReporterOptions;
  readonly #minIntervalMs: number;
  #progress: number | undefined;
  #epoch: number | undefined;
  #samples: number | undefined;
  #totalSamples: number | undefined;
  #metrics: Record<string, number> = {};
  #logs: LogLine[] = [];
  #dirty = false;
  #inFlight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastSentAt = Number.NEGATIVE_INFINITY;
  #stopped = false;

  constructor(options: ProgressReporterOptions) {
    this.#options = options;
    this.#minIntervalMs = options.minIntervalMs ?? 1000;
  }

  /** Adds one sample; it is sent with the next report. */
  push(event: WorkerProgress): void {
    if (this.#stopped) return;
    if (Number.isFinite(event.progress)) this.#progress = Math.min(1, Math.max(0, event.progress));
    if (event.epoch !== undefined) this.#epoch = event.epoch;
    if (event.samplesProcessed !== undefined) this.#samples = event.samplesProcessed;
    if (event.totalSamples !== undefined) this.#totalSamples = event.totalSamples;
    for (const [key, value] of Object.entries(event.metrics ?? {})) {
      if (Number.isFinite(value)) this.#metrics[key] = value;
    }
    if (event.log !== undefined) {
      this.#logs.push(
        create(LogLineSchema, {
          emittedAt: timestampNow(),
          level: levels[event.log.level.toLowerCase()] ?? LogLevel.INFO,
          message: truncateUtf8(event.log.message, MAX_LOG_BYTES),
        }),
      );
      if (this.#logs.length > MAX_PENDING_LOGS)
        this.#logs.splice(0, this.#logs.length - MAX_PENDING_LOGS);
    }
    this.#dirty = true;
    this.#schedule();
  }

  /** Sends whatever is pending now (after the call in flight) and resolves when it is sent. */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (!this.#stopped && (this.#inFlight !== undefined || this.#dirty)) {
      if (this.#inFlight !== undefined) await this.#inFlight;
      else this.#sendNow();
    }
  }

  /** Stops sending; pending samples are dropped. */
  close(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#inFlight !== undefined || this.#stopped) return;
    const wait = Math.max(0, this.#lastSentAt + this.#minIntervalMs - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#sendNow();
    }, wait);
  }

  #sendNow(): void {
    if (!this.#dirty || this.#inFlight !== undefined || this.#stopped) return;
    const logs = this.#logs.splice(0, MAX_LOGS_PER_REPORT);
    const report: ProgressReport = {
      progress: this.#progress ?? 0,
      currentEpoch: this.#epoch ?? 0,
      metrics: this.#metrics,
      logs,
      samplesProcessed: BigInt(Math.max(0, Math.floor(this.#samples ?? 0))),
      totalSamples: BigInt(Math.max(0, Math.floor(this.#totalSamples ?? 0))),
    };
    this.#metrics = {};
    this.#dirty = this.#logs.length > 0;
    this.#lastSentAt = performance.now();
    this.#inFlight = this.#options
      .send(report)
      .then(
        (shouldContinue) => {
          if (!shouldContinue) this.#stop("the job server asked the node to stop the job");
        },
        (error: unknown) => {
          if (this.#options.isFatal?.(error) === true) {
            this.#stop(`the job server refused a progress report: ${String(error)}`);
          } else this.#options.onError?.(error);
        },
      )
      .finally(() => {
        this.#inFlight = undefined;
        if (this.#dirty) this.#schedule();
      });
  }

  #stop(reason: string): void {
    if (this.#stopped) return;
    this.close();
    this.#options.onStop(reason);
  }
}
