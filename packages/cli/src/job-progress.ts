/**
 * Showing a job's updates as they come: on a terminal a live progress bar (cli-progress) with the
 * state, epoch and latest metrics, and the epoch lines and log lines printed above it; anywhere
 * else plain lines, one per change, that read well in a CI log.
 */
import type { Writable } from "node:stream";
import { JobState, type JobStatus } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { StreamJobUpdatesResponse } from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import type { ReconnectInfo } from "@tessera/sdk/job-watch";
import { MultiBar, type SingleBar } from "cli-progress";
import {
  formatEpoch,
  formatLogLine,
  formatMetricsInline,
  formatState,
  oneLine,
} from "./job-format.js";

/** Options of {@link createJobProgress}. */
export interface JobProgressOptions {
  /** Draw a live bar (a terminal) instead of plain lines. */
  readonly tty: boolean;
  /** Passes over the data, when known (shown as "epoch 3/20"). */
  readonly totalEpochs?: number | undefined;
}

/** Shows one job's progress on a stream. */
export interface JobProgress {
  /** Shows an update of the job. */
  update(update: StreamJobUpdatesResponse): void;
  /** Says that the update stream is being reopened (only after a failure). */
  reconnecting(info: ReconnectInfo): void;
  /** Prints a line of its own (above the bar on a terminal). */
  note(text: string): void;
  /** Removes the live parts; the lines printed stay. Safe to call twice. */
  stop(): void;
}

/** What has been shown already, so each change is printed once. */
interface Shown {
  state: number | undefined;
  node: string;
  attempt: number;
  epoch: number;
  /** Tenths of progress printed in plain mode (jobs without epochs). */
  tenths: number;
  metrics: Record<string, number>;
  /** The last error message of a job still retried. */
  problem: string;
}

/**
 * A {@link JobProgress} writing to `stream`. Plain lines:
 * `state: running (node tsr1…, attempt 1)`, `epoch 3/20  train/loss=0.41  train/accuracy=0.88`
 * (per update carrying metrics, or when the epoch moves on), `progress: 40%` (every tenth, for
 * jobs without epochs), `problem: …` (why a job that is retried did not run yet), `log warning: …`,
 * and `reconnecting to the job server (…)`.
 */
export function createJobProgress(stream: Writable, options: JobProgressOptions): JobProgress {
  const shown: Shown = {
    state: undefined,
    node: "",
    attempt: 0,
    epoch: 0,
    tenths: 0,
    metrics: {},
    problem: "",
  };
  const bar = options.tty ? createBar(stream) : undefined;
  const print = (text: string) => {
    if (bar) bar.log(text);
    else stream.write(`${text}\n`);
  };
  let stopped = false;

  return {
    update(update) {
      if (stopped) return;
      const status = update.status;
      if (status !== undefined) {
        const line = stateLine(status, shown);
        if (line !== undefined) print(line);
        if (status.state !== JobState.FAILED && status.errorMessage !== shown.problem) {
          shown.problem = status.errorMessage;
          if (status.errorMessage !== "") print(`problem: ${oneLine(status.errorMessage)}`);
        }
      }
      const epoch = status?.currentEpoch ?? 0;
      const live = update.liveMetrics;
      Object.assign(shown.metrics, live);
      if (Object.keys(live).length > 0 || epoch > shown.epoch) {
        const prefix = status ? formatEpoch(status, options.totalEpochs) : "";
        const metrics = formatMetricsInline(live);
        if (prefix === "") print(`metrics: ${metrics}`);
        else print(metrics === "" ? prefix : `${prefix}  ${metrics}`);
      }
      shown.epoch = Math.max(shown.epoch, epoch);
      for (const log of update.logs) print(formatLogLine(log));
      if (status !== undefined) {
        if (bar) {
          bar.show(status, options.totalEpochs, shown.metrics);
        } else if (epoch === 0) {
          const tenths = Math.floor(status.progress * 10);
          if (tenths > shown.tenths && tenths < 10) {
            shown.tenths = tenths;
            print(`progress: ${tenths * 10}%`);
          }
        }
      }
    },
    reconnecting(info) {
      if (stopped || info.failures === 0) return;
      const why = info.error ? `: ${info.error.rawMessage}` : "";
      print(`reconnecting to the job server (attempt ${info.failures}${why})`);
    },
    note(text) {
      if (!stopped) print(text);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar?.stop();
    },
  };
}

/** The state line to print when the state, node or attempt changed; undefined otherwise. */
function stateLine(status: JobStatus, shown: Shown): string | undefined {
  const changed =
    status.state !== shown.state ||
    status.currentNodeAddress !== shown.node ||
    status.attempt !== shown.attempt;
  shown.state = status.state;
  shown.node = status.currentNodeAddress;
  shown.attempt = status.attempt;
  if (!changed) return undefined;
  const details = [
    status.currentNodeAddress ? `node ${status.currentNodeAddress}` : "",
    status.attempt > 0 ? `attempt ${status.attempt}` : "",
  ].filter((s) => s !== "");
  return `state: ${formatState(status)}${details.length > 0 ? ` (${details.join(", ")})` : ""}`;
}

/** The live bar: one cli-progress bar in a MultiBar, so lines can be printed above it. */
interface LiveBar {
  show(status: JobStatus, totalEpochs: number | undefined, metrics: Record<string, number>): void;
  log(text: string): void;
  stop(): void;
}

function createBar(stream: Writable): LiveBar {
  const multi = new MultiBar({
    stream: stream as NodeJS.WritableStream,
    format: "{state} [{bar}] {percentage}%{detail}",
    barsize: 30,
    hideCursor: false,
    clearOnComplete: false,
    autopadding: true,
    barCompleteChar: "#",
    barIncompleteChar: "-",
  });
  let bar: SingleBar | undefined;
  const lines: string[] = [];
  return {
    show(status, totalEpochs, metrics) {
      const epoch = formatEpoch(status, totalEpochs);
      const inline = formatMetricsInline(metrics);
      const detail = [epoch, inline].filter((s) => s !== "").join("  ");
      const payload = {
        state: formatState(status).padEnd(10),
        detail: detail === "" ? "" : `  ${detail}`,
      };
      const value = Math.round(Math.min(Math.max(status.progress, 0), 1) * 100);
      if (bar === undefined) {
        bar = multi.create(100, value, payload);
        for (const line of lines.splice(0)) multi.log(`${line}\n`);
      } else {
        bar.update(value, payload);
      }
    },
    log(text) {
      if (bar === undefined) lines.push(text);
      else multi.log(`${text}\n`);
    },
    stop() {
      if (bar !== undefined) {
        // Flush lines logged since the last redraw, then leave the final bar on screen.
        multi.update();
        multi.stop();
      }
      for (const line of lines.splice(0)) stream.write(`${line}\n`);
    },
  };
}
