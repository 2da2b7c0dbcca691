/**
 * How the job and artifact commands print answers: `name: value` lines and tables for people
 * (--json prints the response message instead, see formatJson). Amounts stay the decimal strings
 * the services sent; metrics print with six significant digits.
 */
import type { ContentRef } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { Artifact } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import {
  type Job,
  type JobResult,
  JobState,
  type JobStatus,
  type LogLine,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import type {
  CancelJobResponse,
  ListJobsResponse,
} from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { failureReasonName, jobStateName, jobTypeName, logLevelName } from "@tessera/sdk/job-names";
import type { SubmittedJob } from "@tessera/sdk/job-submit";
import { escrowStateName, formatTime, lines, table } from "./wallet-format.js";

/** A metric value: integers as they are, others with six significant digits ("0.963333"). */
export function formatMetricValue(value: number): string {
  if (Number.isInteger(value)) return String(value);
  if (!Number.isFinite(value)) return String(value);
  return String(Number(value.toPrecision(6)));
}

/** Metrics as `name=value` pairs sorted by name, separated by two spaces; "" when none. */
export function formatMetricsInline(metrics: Readonly<Record<string, number>>): string {
  return Object.keys(metrics)
    .sort()
    .map((name) => `${name}=${formatMetricValue(metrics[name] ?? 0)}`)
    .join("  ");
}

/** A byte count for people: "918 B", "1.5 KiB", "12.0 MiB". */
export function formatBytes(bytes: bigint | number): string {
  const n = Number(bytes);
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** "completed", or for a failed job "failed (node-error: out of memory)". */
export function formatState(status: JobStatus): string {
  const name = jobStateName(status.state);
  if (status.state !== JobState.FAILED) return name;
  const reason = failureReasonName(status.failureReason);
  const detail = [reason === "unspecified" ? "" : reason, status.errorMessage]
    .filter((part) => part !== "")
    .join(": ");
  return detail === "" ? name : `${name} (${detail})`;
}

/** "epoch 3/20", "epoch 3" when the total is unknown, "" before the first epoch. */
export function formatEpoch(status: JobStatus, totalEpochs?: number): string {
  if (status.currentEpoch === 0) return "";
  return totalEpochs
    ? `epoch ${status.currentEpoch}/${totalEpochs}`
    : `epoch ${status.currentEpoch}`;
}

/** One line of a job's log: "log warning: text". */
export function formatLogLine(line: LogLine): string {
  return `log ${logLevelName(line.level)}: ${oneLine(line.message)}`;
}

/** `text` on one line: line breaks and the spaces around them become one space. */
export function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, " ");
}

/** What `job submit` printed: the job id first (the one to watch), then what was submitted. */
export function formatSubmitted(submitted: SubmittedJob): string {
  const spec = submitted.job.spec;
  const status = submitted.job.status;
  const rows: Array<readonly [string, string]> = [
    ["job id", spec?.jobId ?? ""],
    ["created", submitted.created ? "yes" : "no (this job id was submitted before)"],
    ["type", spec ? jobTypeName(spec.jobType) : ""],
    ["state", status ? formatState(status) : ""],
    ["payment", spec?.paymentAmount ? spec.paymentAmount : "free"],
  ];
  if (submitted.escrow) {
    rows.push([
      "escrow",
      `${submitted.escrow.escrowId} (${escrowStateName(submitted.escrow.state)})`,
    ]);
  }
  if (spec?.model?.content) rows.push(["model", contentLine(spec.model.content)]);
  if (spec?.dataset) rows.push(["dataset", contentLine(spec.dataset)]);
  if (spec?.initialWeights) rows.push(["initial weights", contentLine(spec.initialWeights)]);
  return lines(rows);
}

/**
 * A job's status and, when it has one, its result: state, progress, node, times, metrics, then
 * the result's artifacts as a table (NAME, SIZE, URI, DIGEST) and the settlement.
 */
export function formatJobStatus(status: JobStatus, result?: JobResult | undefined): string {
  const rows: Array<readonly [string, string]> = [
    ["job id", status.jobId],
    ["state", formatState(status)],
    ["progress", `${Math.round(status.progress * 100)}%`],
  ];
  if (status.currentEpoch > 0) rows.push(["epoch", String(status.currentEpoch)]);
  if (status.currentRound > 0) rows.push(["round", String(status.currentRound)]);
  if (status.attempt > 0) rows.push(["attempt", String(status.attempt)]);
  if (status.state !== JobState.FAILED && status.errorMessage !== "") {
    // Why the last attempt (or placement) did not work out, while the job is retried.
    rows.push(["last problem", oneLine(status.errorMessage)]);
  }
  if (status.currentNodeAddress !== "") rows.push(["node", status.currentNodeAddress]);
  else if (result?.nodeAddress) rows.push(["node", result.nodeAddress]);
  rows.push(["queued at", formatTime(status.queuedAt)]);
  if (status.startedAt) rows.push(["started at", formatTime(status.startedAt)]);
  if (status.endedAt) rows.push(["ended at", formatTime(status.endedAt)]);
  if (result && result.totalComputeTimeMs > 0n) {
    rows.push(["compute time", `${result.totalComputeTimeMs} ms`]);
  }
  if (result?.settlementTransactionId) {
    rows.push(["settlement", result.settlementTransactionId]);
  }
  let text = lines(rows);
  const metrics =
    result && Object.keys(result.finalMetrics).length > 0 ? result.finalMetrics : status.metrics;
  if (Object.keys(metrics).length > 0) {
    text += "metrics:\n";
    text += table(
      [],
      Object.keys(metrics)
        .sort()
        .map((name) => [`  ${name}`, formatMetricValue(metrics[name] ?? 0)]),
      [1],
    );
  }
  if (result && result.artifacts.length > 0) {
    text += "artifacts:\n";
    text += table(
      ["  NAME", "SIZE", "URI", "DIGEST"],
      result.artifacts.map((artifact) => [
        `  ${artifact.name}`,
        artifact.content ? formatBytes(artifact.content.sizeBytes) : "-",
        artifact.content?.uri || "-",
        artifact.content?.digest || "-",
      ]),
      [1],
    );
  }
  return text;
}

/** A cancelled job: its id, state and whether (and by which transaction) the escrow was refunded. */
export function formatCancelled(jobId: string, response: CancelJobResponse): string {
  return lines([
    ["job id", response.status?.jobId || jobId],
    ["state", response.status ? formatState(response.status) : "cancelled"],
    ["refund", response.refundIssued ? "issued" : "none due"],
    ...(response.refundTransactionId
      ? [["refund transaction", response.refundTransactionId] as const]
      : []),
  ]);
}

/**
 * One page of jobs, newest first: JOB ID, TYPE, STATE, PROGRESS, PAYMENT and CREATED; then
 * `next page token: <token>` when there is a next page. An empty page prints "no jobs".
 */
export function formatJobList(page: ListJobsResponse): string {
  if (page.jobs.length === 0) return "no jobs\n";
  const rows = page.jobs.map((job: Job) => [
    job.spec?.jobId ?? job.status?.jobId ?? "-",
    job.spec ? jobTypeName(job.spec.jobType) : "-",
    job.status ? jobStateName(job.status.state) : "-",
    job.status ? `${Math.round(job.status.progress * 100)}%` : "-",
    job.spec?.paymentAmount || "free",
    formatTime(job.createdAt),
  ]);
  let text = table(["JOB ID", "TYPE", "STATE", "PROGRESS", "PAYMENT", "CREATED"], rows, [3, 4]);
  if (page.nextPageToken !== "") text += `next page token: ${page.nextPageToken}\n`;
  return text;
}

/**
 * An artifact: id, name, its content reference (digest, size, uri, media type), owner, job and
 * time; then the reference again as one YAML line to paste into a job spec's `ref:`.
 */
export function formatArtifact(artifact: Artifact, savedTo?: string): string {
  const content = artifact.content;
  const rows: Array<readonly [string, string]> = [];
  if (savedTo !== undefined) rows.push(["saved to", savedTo]);
  rows.push(
    ["artifact id", artifact.artifactId],
    ["name", artifact.name],
    ["digest", content?.digest ?? ""],
    ["size", content ? `${content.sizeBytes} bytes (${formatBytes(content.sizeBytes)})` : ""],
    ["uri", content?.uri ?? ""],
    ["media type", content?.mediaType ?? ""],
    ["owner", artifact.ownerAddress],
    ["job id", artifact.jobId],
    ["created at", formatTime(artifact.createdAt)],
  );
  let text = lines(rows);
  if (content) text += `ref: ${refYaml(content)}\n`;
  return text;
}

/** A ContentRef as a YAML flow mapping, e.g. `{digest: "sha256:…", size_bytes: 12, …}`. */
export function refYaml(ref: ContentRef): string {
  return `{digest: ${JSON.stringify(ref.digest)}, size_bytes: ${ref.sizeBytes}, uri: ${JSON.stringify(ref.uri)}, media_type: ${JSON.stringify(ref.mediaType)}}`;
}

function contentLine(ref: ContentRef): string {
  return `${ref.uri || "(no uri)"} (${ref.digest}, ${formatBytes(ref.sizeBytes)})`;
}
