/**
 * A job as read from `job_record`, with its 64-bit columns turned into numbers, and the wire
 * records (JobStatus, JobResult, Job, StreamJobUpdatesResponse) made from it.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type PreprocessingValidation,
  PreprocessingValidationSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type Job,
  JobFailureReason,
  type JobResult,
  JobResultSchema,
  JobSchema,
  type JobSpec,
  JobSpecSchema,
  JobState,
  type JobStatus,
  JobStatusSchema,
  type LogLine,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  type StreamJobUpdatesResponse,
  StreamJobUpdatesResponseSchema,
} from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import type { Selectable } from "kysely";
import { PROTOCOL_VERSION } from "../protocol-version.js";
import type { JobRecordTable } from "../store/tables.js";

type Int64Keys =
  | "lease_expires_at_ms"
  | "assigned_at_ms"
  | "started_at_ms"
  | "ended_at_ms"
  | "queued_at_ms"
  | "created_at_ms"
  | "updated_at_ms"
  | "expires_at_ms"
  | "max_duration_ms"
  | "not_before_ms"
  | "settlement_retry_at_ms"
  | "update_seq";

/** One row of `job_record` with numbers for its 64-bit columns. */
export type JobRow = Omit<Selectable<JobRecordTable>, Int64Keys> & {
  lease_expires_at_ms: number | null;
  assigned_at_ms: number | null;
  started_at_ms: number | null;
  ended_at_ms: number | null;
  queued_at_ms: number;
  created_at_ms: number;
  updated_at_ms: number;
  expires_at_ms: number;
  max_duration_ms: number;
  not_before_ms: number;
  settlement_retry_at_ms: number;
  update_seq: number;
};

/** Columns a transition may change (everything but the key and the immutable submission). */
export type JobPatch = Partial<
  Omit<JobRow, "job_id" | "owner_address" | "spec" | "job_type" | "created_at_ms" | "update_seq">
>;

const nullableNumber = (value: number | string | null): number | null =>
  value === null ? null : Number(value);

/** Normalises a row as the database returned it. */
export function jobRowFromDb(row: Selectable<JobRecordTable>): JobRow {
  return {
    ...row,
    lease_expires_at_ms: nullableNumber(row.lease_expires_at_ms),
    assigned_at_ms: nullableNumber(row.assigned_at_ms),
    started_at_ms: nullableNumber(row.started_at_ms),
    ended_at_ms: nullableNumber(row.ended_at_ms),
    queued_at_ms: Number(row.queued_at_ms),
    created_at_ms: Number(row.created_at_ms),
    updated_at_ms: Number(row.updated_at_ms),
    expires_at_ms: Number(row.expires_at_ms),
    max_duration_ms: Number(row.max_duration_ms),
    not_before_ms: Number(row.not_before_ms),
    settlement_retry_at_ms: Number(row.settlement_retry_at_ms),
    update_seq: Number(row.update_seq),
  };
}

/** Terminal states: nothing changes a job in them any more (but settlement of its escrow). */
export const TERMINAL_STATES: ReadonlySet<JobState> = new Set([
  JobState.COMPLETED,
  JobState.FAILED,
  JobState.CANCELLED,
]);

/** Whether `state` is COMPLETED, FAILED or CANCELLED. */
export function isTerminal(state: number): boolean {
  return TERMINAL_STATES.has(state);
}

/** States in which a node holds the job under a lease. */
export function isLeased(state: number): boolean {
  return state === JobState.ASSIGNED || state === JobState.RUNNING;
}

/** Base64 of a message's binary encoding (how the tables keep protobuf messages). */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

/** Bytes of a base64 column. */
export function fromBase64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "base64"));
}

/** The job's spec, as submitted. */
export function specOf(row: Pick<JobRow, "spec">): JobSpec {
  return fromBinary(JobSpecSchema, fromBase64(row.spec));
}

/** The job's stored result, or undefined before a node reported one. */
export function storedResultOf(row: Pick<JobRow, "result">): JobResult | undefined {
  return row.result === null ? undefined : fromBinary(JobResultSchema, fromBase64(row.result));
}

/** The route approval of the current (or last) paid lease, if any. */
export function approvalOf(row: Pick<JobRow, "approval">): PreprocessingValidation | undefined {
  return row.approval === null
    ? undefined
    : fromBinary(PreprocessingValidationSchema, fromBase64(row.approval));
}

/** Whether the job pays (a payment_amount above zero). */
export function isPaid(row: Pick<JobRow, "payment_amount">): boolean {
  return row.payment_amount !== "" && row.payment_amount !== "0";
}

/** The job's metrics column as an object. */
export function metricsOf(row: Pick<JobRow, "metrics">): Record<string, number> {
  return JSON.parse(row.metrics) as Record<string, number>;
}

/** The job's JobStatus. */
export function statusOf(row: JobRow): JobStatus {
  return create(JobStatusSchema, {
    protocolVersion: PROTOCOL_VERSION,
    jobId: row.job_id,
    state: row.state,
    progress: row.progress,
    currentNodeAddress: row.lease_node ?? "",
    ...(row.started_at_ms === null ? {} : { startedAt: timestampFromMs(row.started_at_ms) }),
    ...(row.ended_at_ms === null ? {} : { endedAt: timestampFromMs(row.ended_at_ms) }),
    failureReason: row.failure_reason as JobFailureReason,
    errorMessage: row.error_message,
    metrics: metricsOf(row),
    currentEpoch: row.current_epoch,
    attempt: row.attempt,
    currentRound: row.current_round,
    queuedAt: timestampFromMs(row.queued_at_ms),
    updatedAt: timestampFromMs(row.updated_at_ms),
  });
}

/**
 * The job's result as served to clients: the node's report with the settlement transaction id
 * and, once terminal, the job's final state.
 */
export function resultOf(row: JobRow): JobResult | undefined {
  const stored = storedResultOf(row);
  if (stored === undefined) return undefined;
  const final = isTerminal(row.state) ? row.state : stored.state;
  return create(JobResultSchema, {
    ...stored,
    protocolVersion: PROTOCOL_VERSION,
    state: final,
    ...(row.state === JobState.FAILED
      ? {
          failureReason: row.failure_reason as JobFailureReason,
          errorMessage: row.error_message,
        }
      : {}),
    settlementTransactionId: row.settlement_tx_id,
  });
}

/** The whole Job record. */
export function jobOf(row: JobRow): Job {
  const result = resultOf(row);
  return create(JobSchema, {
    protocolVersion: PROTOCOL_VERSION,
    spec: specOf(row),
    status: statusOf(row),
    ...(result === undefined ? {} : { result }),
    ownerAddress: row.owner_address,
    createdAt: timestampFromMs(row.created_at_ms),
  });
}

/** What a change brings besides the new status: live data from the node. */
export interface UpdateExtras {
  readonly liveMetrics?: Record<string, number> | undefined;
  readonly logs?: readonly LogLine[] | undefined;
  readonly visualizationData?: Uint8Array | undefined;
  readonly visualizationMediaType?: string | undefined;
}

/** The update record of `row` (after a change) with sequence `row.update_seq`. */
export function updateOf(row: JobRow, extras: UpdateExtras = {}): StreamJobUpdatesResponse {
  const carriesResult = row.state === JobState.VALIDATING || isTerminal(row.state);
  const result = carriesResult ? resultOf(row) : undefined;
  return create(StreamJobUpdatesResponseSchema, {
    jobId: row.job_id,
    sequence: BigInt(row.update_seq),
    status: statusOf(row),
    liveMetrics: extras.liveMetrics ?? {},
    logs: [...(extras.logs ?? [])],
    visualizationData: extras.visualizationData ?? new Uint8Array(0),
    visualizationMediaType: extras.visualizationMediaType ?? "",
    ...(result === undefined ? {} : { result }),
  });
}

/** Base64 of an update record, for `job_update.body`. */
export function encodeUpdate(update: StreamJobUpdatesResponse): string {
  return toBase64(toBinary(StreamJobUpdatesResponseSchema, update));
}

/** An update record from `job_update.body`. */
export function decodeUpdate(body: string): StreamJobUpdatesResponse {
  return fromBinary(StreamJobUpdatesResponseSchema, fromBase64(body));
}

/** Failure reasons that are the job's own fault: retrying elsewhere would not help. */
export const JOB_FAULTS: ReadonlySet<JobFailureReason> = new Set([
  JobFailureReason.INVALID_INPUT,
  JobFailureReason.MEMORY_LIMIT_EXCEEDED,
  JobFailureReason.TIME_LIMIT_EXCEEDED,
]);
