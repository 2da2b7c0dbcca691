/**
 * The tables of the job server's queue, as Kysely sees them; {@link jobServerMigrations} creates
 * them (./migrations.ts).
 *
 * Conventions (as in the wallet and the registry): times are Unix milliseconds in `bigint` columns
 * (PostgreSQL hands them back as strings, SQLite as numbers: read them through `Number`); amounts
 * and uint64 sequences are fixed-width decimal text (`Money` of @tessera/store); protobuf messages
 * are stored as base64 of their binary encoding; booleans are integers 0/1.
 */
import type { Money } from "@tessera/store";
import type { ColumnType } from "kysely";

/** A 64-bit integer column: written as a number, read as a number (SQLite) or string (pg). */
export type Int64Column = ColumnType<number | string, number, number>;
/** A nullable 64-bit integer column. */
export type NullableInt64Column = ColumnType<
  number | string | null,
  number | null | undefined,
  number | null
>;

/** One job: its immutable spec and owner, its live state, its current lease and its outcome. */
export interface JobRecordTable {
  job_id: string;
  owner_address: string;
  /** Base64 of the JobSpec's binary encoding, as submitted. */
  spec: string;
  /** tessera.job.v1.JobType. */
  job_type: number;
  /** Effective tessera.job.v1.JobPriority (UNSPECIFIED stored as NORMAL). */
  priority: number;
  /** tessera.job.v1.JobState. */
  state: number;
  /** Number of the current (or last) lease, 1-based; 0 before the first. */
  attempt: number;
  max_attempts: number;
  progress: number;
  current_epoch: number;
  current_round: number;
  /** JSON object of the latest metrics ("<phase>/<name>" -> number). */
  metrics: string;
  /** tessera.job.v1.JobFailureReason of the job, or of its last failed attempt. */
  failure_reason: number;
  error_message: string;
  /** The current lease; null while no node holds the job. */
  lease_id: string | null;
  lease_node: string | null;
  lease_expires_at_ms: NullableInt64Column;
  /** When the current lease was issued. */
  assigned_at_ms: NullableInt64Column;
  /** When the current attempt started RUNNING. */
  started_at_ms: NullableInt64Column;
  ended_at_ms: NullableInt64Column;
  /** When the job was submitted (and the order among equal priorities). */
  queued_at_ms: Int64Column;
  created_at_ms: Int64Column;
  updated_at_ms: Int64Column;
  /** The job fails (EXPIRED or NO_ELIGIBLE_NODE) if not completed by then. */
  expires_at_ms: Int64Column;
  /** Wall-clock limit of one attempt. */
  max_duration_ms: Int64Column;
  /** Not placed before this time (e.g. while an earlier route approval is still valid). */
  not_before_ms: Int64Column;
  /** Decimal base units the job pays; "0" for a free job. */
  payment_amount: string;
  escrow_id: string;
  payer_address: string;
  /** Base64 of the PreprocessingValidation of the current route; null for free jobs. */
  approval: string | null;
  /** Base64 of the JobResult once a node reported one. */
  result: string | null;
  /** Settlement still to do: "validate" (then release or refund), "refund"; null when none. */
  settlement: string | null;
  /** The wallet's transaction id of the release or refund, once settled. */
  settlement_tx_id: string;
  /** Earliest time of the next settlement try (backs off while a peer is unavailable). */
  settlement_retry_at_ms: Int64Column;
  /** Why the escrow is refunded, for the wallet's record. */
  refund_reason: string;
  /** Sequence of the last update in job_update. */
  update_seq: Int64Column;
}

/** The append-only log of a job's updates, read by StreamJobUpdates. */
export interface JobUpdateTable {
  job_id: string;
  /** 1, 2, 3... per job. */
  seq: Int64Column;
  created_at_ms: Int64Column;
  /** Base64 of the StreamJobUpdatesResponse's binary encoding. */
  body: string;
}

/** A content digest a job's spec reads (model, dataset, weights): who may read those artifacts. */
export interface JobInputTable {
  job_id: string;
  digest: string;
}

/** Every lease ever issued: the fencing token of one attempt on one node. */
export interface JobLeaseTable {
  lease_id: string;
  job_id: string;
  node_address: string;
  attempt: number;
  /**
   * "active" (the node works under it), "reported" (result handed in), "closed" (the node
   * reported the lease closed), "lapsed" (expired; the job was requeued), "revoked" (cancelled,
   * expired or over its time limit: the node must stop), "refused" (the node declined it),
   * "released" (the node gave the job back).
   */
  state: string;
  /** 1 once the node accepted the assignment. */
  accepted: number;
  issued_at_ms: Int64Column;
  expires_at_ms: Int64Column;
  ended_at_ms: NullableInt64Column;
  /** Why the lease ended, e.g. "cancelled by client". */
  reason: string;
  /** 1 once the node was told (on its stream) that a revoked lease ended. */
  notified: number;
  /** Compute time the node reported when it closed the lease. */
  compute_time_ms: Int64Column;
}

/** A compute node registered with this job server. */
export interface JobNodeTable {
  address: string;
  /** Base64 of the sealed NodeRecord. */
  record: string;
  /** The record's uint64 sequence as fixed-width text. */
  sequence: Money;
  registered_at_ms: Int64Column;
  /** Last heartbeat, stream or report from the node. */
  last_seen_ms: Int64Column;
  /** Base64 of the latest NodeLoad, or null before any. */
  load: string | null;
  /**
   * Leases the node can hold at once as of its latest load: its free slots then plus the leases
   * of this job server it held then.
   */
  capacity: number;
  online: number;
  reputation: number;
  banned_until_ms: NullableInt64Column;
  jobs_completed: Int64Column;
  jobs_failed: Int64Column;
  compute_time_ms: Int64Column;
  earned_amount: Money;
}

/** Every table of the job queue. Add it to the job server database's interface. */
export interface JobServerTables {
  job_record: JobRecordTable;
  job_update: JobUpdateTable;
  job_input: JobInputTable;
  job_lease: JobLeaseTable;
  job_node: JobNodeTable;
}
