/**
 * Checks of what nodes report under a lease (progress, metrics, logs, visualisation), each
 * refusal invalid_argument naming the field.
 */
import type { LogLine } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { invalidArgument } from "../errors.js";

/** Most log lines in one report. */
export const MAX_LOG_LINES = 100;
/** Most bytes of one log line. */
export const MAX_LOG_LINE_BYTES = 4096;
/** Most bytes of one visualisation payload. */
export const MAX_VISUALIZATION_BYTES = 64 * 1024;
/** Most metrics in one report. */
export const MAX_METRICS = 256;

const METRIC_KEY = /^[A-Za-z0-9_.:/-]{1,128}$/;

/** What a node reports about a running job. */
export interface ProgressInput {
  readonly progress: number;
  readonly currentEpoch: number;
  readonly currentRound: number;
  readonly metrics: Readonly<Record<string, number>>;
  readonly logs: readonly LogLine[];
  readonly visualizationData: Uint8Array;
  readonly visualizationMediaType: string;
}

/**
 * Checks a progress report.
 * @throws JobServerError invalid_argument naming the field.
 */
export function checkProgress(input: ProgressInput): void {
  if (!Number.isFinite(input.progress) || input.progress < 0 || input.progress > 1) {
    throw invalidArgument("progress", "must be in [0, 1]");
  }
  const keys = Object.keys(input.metrics);
  if (keys.length > MAX_METRICS) {
    throw invalidArgument("metrics", `at most ${MAX_METRICS} per report`);
  }
  for (const key of keys) {
    if (!METRIC_KEY.test(key)) {
      throw invalidArgument(
        `metrics[${JSON.stringify(key.slice(0, 128))}]`,
        'keys are "<phase>/<name>", at most 128 characters',
      );
    }
    if (!Number.isFinite(input.metrics[key])) {
      throw invalidArgument(`metrics[${JSON.stringify(key)}]`, "must be a finite number");
    }
  }
  if (input.logs.length > MAX_LOG_LINES) {
    throw invalidArgument("logs", `at most ${MAX_LOG_LINES} lines per report`);
  }
  for (const [index, line] of input.logs.entries()) {
    if (Buffer.byteLength(line.message, "utf8") > MAX_LOG_LINE_BYTES) {
      throw invalidArgument(`logs[${index}].message`, `at most ${MAX_LOG_LINE_BYTES} bytes`);
    }
  }
  if (input.visualizationData.length > MAX_VISUALIZATION_BYTES) {
    throw invalidArgument("visualization_data", `at most ${MAX_VISUALIZATION_BYTES} bytes`);
  }
  if (input.visualizationMediaType.length > 256) {
    throw invalidArgument("visualization_media_type", "is too long");
  }
}
