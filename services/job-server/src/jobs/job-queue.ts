/**
 * The client side of the job queue: submit (idempotent on the job id), read, list, cancel, and
 * the update log that StreamJobUpdates replays. No Connect here: callers pass the verified
 * caller; refusals are {@link JobServerError}s.
 */
import { equals, toBinary } from "@bufbuild/protobuf";
import {
  JobFailureReason,
  JobSpecSchema,
  JobState,
  type JobType,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { StreamJobUpdatesResponse } from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { JobServerError } from "../errors.js";
import {
  decodeUpdate,
  isTerminal,
  type JobRow,
  jobRowFromDb,
  specOf,
  TERMINAL_STATES,
  toBase64,
} from "./job-row.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import type { QueueCore } from "./queue-core.js";
import type { CheckedSpec } from "./spec-check.js";

/** What {@link createJobQueue} needs. */
export interface JobQueueOptions {
  readonly core: QueueCore;
  /** Most jobs one client may have that are not finished; more is resource_exhausted. */
  readonly maxQueuedPerClient: number;
}

/** A submitted job, and whether this call created it. */
export interface SubmitOutcome {
  readonly job: JobRow;
  readonly created: boolean;
}

/** ListJobs filters and paging. */
export interface ListQuery {
  readonly owner: string;
  readonly jobType: JobType;
  readonly state: JobState;
  readonly pageSize: number;
  readonly pageToken: string;
}

/** One page of jobs, newest first. */
export interface JobPage {
  readonly jobs: readonly JobRow[];
  readonly nextPageToken: string;
  readonly totalCount: number;
}

/** The client side of the queue; see the module comment. */
export interface JobQueue {
  /**
   * The job `jobId` if it exists and its spec equals `checked.spec` and its owner is `owner`
   * (an idempotent replay); undefined when there is no such job.
   * @throws JobServerError already_exists when the id is taken by another spec or client.
   */
  findReplay(owner: string, checked: CheckedSpec): Promise<JobRow | undefined>;
  /**
   * Stores a new job QUEUED (durable when this resolves), or returns the existing one on an
   * idempotent replay.
   * @throws JobServerError already_exists (id taken by another spec or client),
   * resource_exhausted (the client's unfinished jobs are at the limit).
   */
  submit(owner: string, checked: CheckedSpec): Promise<SubmitOutcome>;
  /** The job, or undefined. */
  get(jobId: string): Promise<JobRow | undefined>;
  /**
   * The job, if `caller` owns it.
   * @throws JobServerError not_found, permission_denied.
   */
  getOwned(jobId: string, caller: string): Promise<JobRow>;
  /** A page of `query.owner`'s jobs. */
  list(query: ListQuery): Promise<JobPage>;
  /**
   * Cancels the job: CANCELLED, its lease revoked, a paid job's escrow marked for refund.
   * Cancelling a cancelled job returns it as it is.
   * @throws JobServerError not_found, permission_denied, failed_precondition (COMPLETED, FAILED,
   * or VALIDATING: the node's result is with the validators).
   */
  cancel(jobId: string, caller: string, reason: string): Promise<JobRow>;
  /** Up to `limit` updates of the job after `afterSeq`, in order. */
  updatesAfter(jobId: string, afterSeq: number, limit: number): Promise<StreamJobUpdatesResponse[]>;
  /** The job's latest update. */
  latestUpdate(jobId: string): Promise<StreamJobUpdatesResponse | undefined>;
  /** Queued jobs that may be placed now, highest priority and oldest first. */
  placeable(limit: number): Promise<JobRow[]>;
  /**
   * Records why a queued job cannot be placed (its status error_message), unless it already
   * says so.
   */
  noteUnplaceable(jobId: string, reason: string): Promise<void>;
  /** Keeps a queued job from being placed before `notBeforeMs`, saying why. */
  defer(jobId: string, notBeforeMs: number, reason: string): Promise<void>;
}

/** Largest ListJobs page. */
export const MAX_PAGE_SIZE = 100;
/** ListJobs page size when the request says 0. */
export const DEFAULT_PAGE_SIZE = 50;

/** The client side of the queue over `options.core`. */
export function createJobQueue(options: JobQueueOptions): JobQueue {
  const { core, maxQueuedPerClient } = options;
  const db = core.store.db;

  async function read(jobId: string): Promise<JobRow | undefined> {
    const row = await db
      .selectFrom("job_record")
      .selectAll()
      .where("job_id", "=", jobId)
      .executeTakeFirst();
    return row === undefined ? undefined : jobRowFromDb(row);
  }

  function replayOf(row: JobRow, owner: string, checked: CheckedSpec): JobRow {
    if (row.owner_address !== owner || !equals(JobSpecSchema, specOf(row), checked.spec)) {
      throw new JobServerError(
        "already_exists",
        row.owner_address !== owner
          ? `job ${checked.jobId} already exists (job ids are unique on this job server: choose another, e.g. a UUID)`
          : `job ${checked.jobId} already exists with a different spec`,
      );
    }
    return row;
  }

  const queue: JobQueue = {
    async findReplay(owner, checked) {
      const row = await read(checked.jobId);
      return row === undefined ? undefined : replayOf(row, owner, checked);
    },

    async submit(owner, checked) {
      return core.transact(async (tx) => {
        const { trx, now } = tx;
        const existing = await tx.lockJob(checked.jobId);
        if (existing !== undefined) {
          return { job: replayOf(existing, owner, checked), created: false };
        }
        const unfinished = await trx
          .selectFrom("job_record")
          .select((eb) => eb.fn.countAll<number | string>().as("n"))
          .where("owner_address", "=", owner)
          .where("state", "not in", [...TERMINAL_STATES])
          .executeTakeFirstOrThrow();
        if (Number(unfinished.n) >= maxQueuedPerClient) {
          throw new JobServerError(
            "resource_exhausted",
            `you have ${Number(unfinished.n)} unfinished jobs, the most this job server queues per client is ${maxQueuedPerClient}`,
          );
        }
        const spec = checked.spec;
        const values = {
          job_id: checked.jobId,
          owner_address: owner,
          spec: toBase64(toBinary(JobSpecSchema, spec)),
          job_type: spec.jobType,
          priority: checked.priority,
          state: JobState.QUEUED,
          attempt: 0,
          max_attempts: checked.maxAttempts,
          progress: 0,
          current_epoch: 0,
          current_round: 0,
          metrics: "{}",
          failure_reason: JobFailureReason.UNSPECIFIED,
          error_message: "",
          lease_id: null,
          lease_node: null,
          lease_expires_at_ms: null,
          assigned_at_ms: null,
          started_at_ms: null,
          ended_at_ms: null,
          queued_at_ms: now,
          created_at_ms: now,
          updated_at_ms: now,
          expires_at_ms: checked.expiresAtMs,
          max_duration_ms: checked.maxDurationMs,
          not_before_ms: 0,
          payment_amount: checked.paymentAmount.toString(),
          escrow_id: checked.paymentAmount > 0n ? spec.escrowId : "",
          payer_address: checked.paymentAmount > 0n ? spec.payerAddress : "",
          approval: null,
          result: null,
          settlement: null,
          settlement_tx_id: "",
          settlement_retry_at_ms: 0,
          refund_reason: "",
          update_seq: 0,
        };
        const inserted = await trx
          .insertInto("job_record")
          .values(values)
          .onConflict((conflict) => conflict.column("job_id").doNothing())
          .executeTakeFirst();
        if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 0) {
          // A concurrent submit of the same id won; answer as its replay.
          const winner = await tx.lockJob(checked.jobId);
          if (winner === undefined) throw new Error(`job ${checked.jobId} vanished`);
          return { job: replayOf(winner, owner, checked), created: false };
        }
        if (checked.inputDigests.length > 0) {
          await trx
            .insertInto("job_input")
            .values(checked.inputDigests.map((digest) => ({ job_id: checked.jobId, digest })))
            .execute();
        }
        // The first update (sequence 1): the job as accepted.
        const job = await tx.write(jobRowFromDb(values), {});
        return { job, created: true };
      });
    },

    get: read,

    async getOwned(jobId, caller) {
      const row = await read(jobId);
      if (row === undefined) throw new JobServerError("not_found", `job ${jobId} does not exist`);
      if (row.owner_address !== caller) {
        throw new JobServerError("permission_denied", `job ${jobId} belongs to another client`);
      }
      return row;
    },

    async list(query) {
      const filters = { o: query.owner, t: query.jobType, s: query.state };
      const after = decodePageToken(query.pageToken, filters);
      let base = db.selectFrom("job_record").where("owner_address", "=", query.owner);
      if (query.jobType !== 0) base = base.where("job_type", "=", query.jobType);
      if (query.state !== 0) base = base.where("state", "=", query.state);
      const total = await base
        .select((eb) => eb.fn.countAll<number | string>().as("n"))
        .executeTakeFirstOrThrow();
      let page = base.selectAll();
      if (after !== undefined) {
        page = page.where((eb) =>
          eb.or([
            eb("created_at_ms", "<", after.createdAtMs),
            eb.and([eb("created_at_ms", "=", after.createdAtMs), eb("job_id", "<", after.jobId)]),
          ]),
        );
      }
      const rows = await page
        .orderBy("created_at_ms", "desc")
        .orderBy("job_id", "desc")
        .limit(query.pageSize + 1)
        .execute();
      const jobs = rows.slice(0, query.pageSize).map(jobRowFromDb);
      const last = jobs.at(-1);
      return {
        jobs,
        nextPageToken:
          rows.length > query.pageSize && last !== undefined
            ? encodePageToken(filters, { createdAtMs: last.created_at_ms, jobId: last.job_id })
            : "",
        totalCount: Number(total.n),
      };
    },

    async cancel(jobId, caller, reason) {
      return core.transact(async (tx) => {
        const row = await tx.lockJob(jobId);
        if (row === undefined) throw new JobServerError("not_found", `job ${jobId} does not exist`);
        if (row.owner_address !== caller) {
          throw new JobServerError("permission_denied", `job ${jobId} belongs to another client`);
        }
        if (row.state === JobState.CANCELLED) return row;
        if (isTerminal(row.state)) {
          throw new JobServerError(
            "failed_precondition",
            `job ${jobId} is ${JobState[row.state]}; only unfinished jobs can be cancelled`,
          );
        }
        if (row.state === JobState.VALIDATING) {
          throw new JobServerError(
            "failed_precondition",
            `job ${jobId} is VALIDATING: its result is with the validators and can no longer be cancelled`,
          );
        }
        const why = reason === "" ? "cancelled by client" : `cancelled by client: ${reason}`;
        return tx.failJob(row, JobFailureReason.UNSPECIFIED, why, {
          state: JobState.CANCELLED,
          leaseReason: why,
          refundReason: "cancelled",
        });
      });
    },

    async updatesAfter(jobId, afterSeq, limit) {
      const rows = await db
        .selectFrom("job_update")
        .select("body")
        .where("job_id", "=", jobId)
        .where("seq", ">", afterSeq)
        .orderBy("seq", "asc")
        .limit(limit)
        .execute();
      return rows.map((row) => decodeUpdate(row.body));
    },

    async latestUpdate(jobId) {
      const row = await db
        .selectFrom("job_update")
        .select("body")
        .where("job_id", "=", jobId)
        .orderBy("seq", "desc")
        .limit(1)
        .executeTakeFirst();
      return row === undefined ? undefined : decodeUpdate(row.body);
    },

    async placeable(limit) {
      const rows = await db
        .selectFrom("job_record")
        .selectAll()
        .where("state", "=", JobState.QUEUED)
        .where("not_before_ms", "<=", core.now())
        .orderBy("priority", "desc")
        .orderBy("queued_at_ms", "asc")
        .orderBy("job_id", "asc")
        .limit(limit)
        .execute();
      return rows.map(jobRowFromDb);
    },

    async noteUnplaceable(jobId, reason) {
      await core.transact(async (tx) => {
        const row = await tx.lockJob(jobId, { skipLocked: true });
        if (row === undefined || row.state !== JobState.QUEUED || row.error_message === reason) {
          return;
        }
        // A retried job keeps the failure of its last attempt; a scheduling note replaces only
        // another scheduling note.
        if (row.failure_reason !== JobFailureReason.UNSPECIFIED) return;
        await tx.write(row, { error_message: reason });
      });
    },

    async defer(jobId, notBeforeMs, reason) {
      await core.transact(async (tx) => {
        const row = await tx.lockJob(jobId, { skipLocked: true });
        if (row === undefined || row.state !== JobState.QUEUED) return;
        if (row.error_message === reason || row.failure_reason !== JobFailureReason.UNSPECIFIED) {
          await tx.writeQuietly(row, { not_before_ms: notBeforeMs });
          return;
        }
        await tx.write(row, { not_before_ms: notBeforeMs, error_message: reason });
      });
    },
  };
  return queue;
}
