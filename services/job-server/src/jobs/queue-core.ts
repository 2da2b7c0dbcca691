/**
 * The transaction core of the job queue: every state change of a job goes through
 * {@link QueueCore.transact}, which locks the job row, writes the new state and appends the
 * matching record to the job's update log in the same database transaction, and tells listeners
 * (update watchers, the dispatcher, the scheduler) once it has committed.
 *
 * Attempt accounting lives here too, because every way an attempt can end (lapse, refusal,
 * release, node error, cancellation, expiry) shares it: {@link QueueTx.endAttempt} requeues the
 * job or fails it when its attempts are used up, and {@link QueueTx.failJob} ends it for good,
 * marking a paid job's escrow for refund.
 */
import { randomBytes } from "node:crypto";
import { JobFailureReason, JobState } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { Store } from "@tessera/store";
import { sql, type Transaction } from "kysely";
import type { JobServerTables } from "../store/tables.js";
import {
  encodeUpdate,
  isPaid,
  type JobPatch,
  type JobRow,
  jobRowFromDb,
  type UpdateExtras,
  updateOf,
} from "./job-row.js";

/** How a lease ended. */
export type LeaseEndState = "reported" | "closed" | "lapsed" | "revoked" | "refused" | "released";

/** A lease that ended in a committed transaction. */
export interface EndedLease {
  readonly leaseId: string;
  readonly jobId: string;
  readonly nodeAddress: string;
  readonly state: LeaseEndState;
  readonly reason: string;
}

/** What a committed transaction changed, for listeners. */
export interface QueueChanges {
  /** The jobs written, as they are now (one per job, the last write). */
  readonly jobs: readonly JobRow[];
  /** Leases that ended. */
  readonly endedLeases: readonly EndedLease[];
}

/** One transaction of the queue. */
export interface QueueTx {
  readonly trx: Transaction<JobServerTables>;
  /** The queue's clock at the start of the transaction. */
  readonly now: number;
  /** The job, locked until the transaction ends; `skipLocked` skips a row another holds. */
  lockJob(jobId: string, options?: { skipLocked?: boolean }): Promise<JobRow | undefined>;
  /**
   * Writes `patch` to `before`'s job and appends its update record (the new status plus
   * `extras`); returns the job as written.
   */
  write(before: JobRow, patch: JobPatch, extras?: UpdateExtras): Promise<JobRow>;
  /** Changes columns that no watcher sees (lease expiry, settlement bookkeeping), without an update record. */
  writeQuietly(before: JobRow, patch: JobPatch): Promise<JobRow>;
  /** Issues a new lease on `job` for `nodeAddress`; returns its id. */
  insertLease(
    job: JobRow,
    nodeAddress: string,
    attempt: number,
    expiresAtMs: number,
  ): Promise<string>;
  /** Ends lease `leaseId` (if still active or reported) with `state` and `reason`. */
  endLease(
    job: Pick<JobRow, "job_id">,
    leaseId: string,
    nodeAddress: string,
    state: LeaseEndState,
    reason: string,
  ): Promise<void>;
  /**
   * Ends the current attempt of a leased job without a result: requeues it (the attempt counts
   * when `counts`; otherwise its number is given back), or fails it ATTEMPTS_EXHAUSTED when it
   * was the last, or with `failure` at once when `jobFault` (the job itself is at fault).
   */
  endAttempt(job: JobRow, options: EndAttemptOptions): Promise<JobRow>;
  /**
   * Ends the job FAILED (or CANCELLED) with `reason`: its lease (if any) is revoked so the node
   * stops, and a paid job's escrow is marked for refund.
   */
  failJob(
    job: JobRow,
    reason: JobFailureReason,
    message: string,
    options?: { state?: JobState; leaseReason?: string; refundReason?: string },
  ): Promise<JobRow>;
  /** Adds to a node's counters (completed, failed attempts, compute time). */
  bumpNode(
    nodeAddress: string,
    counters: { completed?: number; failed?: number; computeTimeMs?: number },
  ): Promise<void>;
}

/** Options of {@link QueueTx.endAttempt}. */
export interface EndAttemptOptions {
  /** How the lease ends. */
  readonly leaseState: LeaseEndState;
  /** Why, for the lease, the node and the job's error_message. */
  readonly reason: string;
  /** Whether the attempt counts against max_attempts. */
  readonly counts: boolean;
  /** The failure of this attempt (UNSPECIFIED when it is not a failure, e.g. a refusal). */
  readonly failure: JobFailureReason;
  /** The job itself is at fault: fail it now with `failure`. */
  readonly jobFault?: boolean;
}

/** What {@link createQueueCore} needs. */
export interface QueueCoreOptions {
  readonly store: Store<JobServerTables>;
  /** The clock, Unix milliseconds. */
  readonly now: () => number;
}

/** The queue's transaction core; see the module comment. */
export interface QueueCore {
  readonly store: Store<JobServerTables>;
  now(): number;
  /** Runs `fn` in one transaction; listeners hear of its changes once it committed. */
  transact<T>(fn: (tx: QueueTx) => Promise<T>): Promise<T>;
  /** Adds a listener of committed changes; returns a function that removes it. */
  onChanges(listener: (changes: QueueChanges) => void): () => void;
}

/** A new opaque lease id: unique per attempt. */
export function newLeaseId(): string {
  return `lease_${randomBytes(16).toString("hex")}`;
}

/** The queue core over `options.store`. */
export function createQueueCore(options: QueueCoreOptions): QueueCore {
  const { store, now } = options;
  const listeners = new Set<(changes: QueueChanges) => void>();

  function createTx(trx: Transaction<JobServerTables>, at: number) {
    const jobs = new Map<string, JobRow>();
    const endedLeases: EndedLease[] = [];

    const tx: QueueTx = {
      trx,
      now: at,
      async lockJob(jobId, lockOptions = {}) {
        const row = await store
          .forUpdate(trx.selectFrom("job_record").selectAll().where("job_id", "=", jobId), {
            skipLocked: lockOptions.skipLocked === true,
          })
          .executeTakeFirst();
        return row === undefined ? undefined : jobRowFromDb(row);
      },

      async write(before, patch, extras) {
        const next: JobRow = {
          ...before,
          ...patch,
          updated_at_ms: at,
          update_seq: before.update_seq + 1,
        };
        await trx
          .updateTable("job_record")
          .set({ ...patch, updated_at_ms: at, update_seq: next.update_seq })
          .where("job_id", "=", before.job_id)
          .execute();
        await trx
          .insertInto("job_update")
          .values({
            job_id: before.job_id,
            seq: next.update_seq,
            created_at_ms: at,
            body: encodeUpdate(updateOf(next, extras)),
          })
          .execute();
        jobs.set(next.job_id, next);
        return next;
      },

      async writeQuietly(before, patch) {
        const next: JobRow = { ...before, ...patch };
        await trx
          .updateTable("job_record")
          .set(patch)
          .where("job_id", "=", before.job_id)
          .execute();
        return next;
      },

      async insertLease(job, nodeAddress, attempt, expiresAtMs) {
        const leaseId = newLeaseId();
        await trx
          .insertInto("job_lease")
          .values({
            lease_id: leaseId,
            job_id: job.job_id,
            node_address: nodeAddress,
            attempt,
            state: "active",
            accepted: 0,
            issued_at_ms: at,
            expires_at_ms: expiresAtMs,
            ended_at_ms: null,
            reason: "",
            notified: 0,
            compute_time_ms: 0,
          })
          .execute();
        return leaseId;
      },

      async endLease(job, leaseId, nodeAddress, state, reason) {
        const ended = await trx
          .updateTable("job_lease")
          .set({ state, reason, ended_at_ms: at, notified: state === "revoked" ? 0 : 1 })
          .where("lease_id", "=", leaseId)
          .where("state", "in", ["active", "reported"])
          .executeTakeFirst();
        if (Number(ended.numUpdatedRows) > 0) {
          endedLeases.push({ leaseId, jobId: job.job_id, nodeAddress, state, reason });
        }
      },

      async endAttempt(job, attemptOptions) {
        const { leaseState, reason, counts, failure } = attemptOptions;
        const node = job.lease_node;
        if (job.lease_id !== null && node !== null) {
          await tx.endLease(job, job.lease_id, node, leaseState, reason);
          if (counts) await tx.bumpNode(node, { failed: 1 });
        }
        if (attemptOptions.jobFault === true) {
          return tx.failJob(job, failure, reason, { leaseReason: reason });
        }
        if (counts && job.attempt >= job.max_attempts) {
          return tx.failJob(
            job,
            JobFailureReason.ATTEMPTS_EXHAUSTED,
            `all ${job.max_attempts} attempt(s) failed; the last: ${reason}`,
            { leaseReason: reason },
          );
        }
        return tx.write(job, {
          state: JobState.QUEUED,
          attempt: counts ? job.attempt : Math.max(0, job.attempt - 1),
          lease_id: null,
          lease_node: null,
          lease_expires_at_ms: null,
          assigned_at_ms: null,
          started_at_ms: null,
          progress: 0,
          current_epoch: 0,
          current_round: 0,
          ...(counts ? { failure_reason: failure, error_message: reason } : {}),
        });
      },

      async failJob(job, reason, message, failOptions = {}) {
        const node = job.lease_node;
        if (job.lease_id !== null && node !== null) {
          await tx.endLease(job, job.lease_id, node, "revoked", failOptions.leaseReason ?? message);
        }
        const refund = isPaid(job) && job.settlement_tx_id === "";
        return tx.write(job, {
          state: failOptions.state ?? JobState.FAILED,
          failure_reason: reason,
          error_message: message,
          lease_id: null,
          lease_node: null,
          lease_expires_at_ms: null,
          ended_at_ms: at,
          settlement: refund ? "refund" : null,
          settlement_retry_at_ms: at,
          refund_reason: (failOptions.refundReason ?? message).slice(0, 256),
        });
      },

      async bumpNode(nodeAddress, counters) {
        await trx
          .updateTable("job_node")
          .set({
            jobs_completed: sql`jobs_completed + ${counters.completed ?? 0}`,
            jobs_failed: sql`jobs_failed + ${counters.failed ?? 0}`,
            compute_time_ms: sql`compute_time_ms + ${Math.max(0, Math.trunc(counters.computeTimeMs ?? 0))}`,
          })
          .where("address", "=", nodeAddress)
          .execute();
      },
    };
    return { tx, jobs, endedLeases };
  }

  return {
    store,
    now,
    async transact(fn) {
      let changes: QueueChanges = { jobs: [], endedLeases: [] };
      const result = await store.transaction(async (trx) => {
        // A PostgreSQL transaction that lost to a concurrent one runs again from scratch.
        const { tx, jobs, endedLeases } = createTx(trx, now());
        const value = await fn(tx);
        changes = { jobs: [...jobs.values()], endedLeases };
        return value;
      });
      if (changes.jobs.length > 0 || changes.endedLeases.length > 0) {
        for (const listener of listeners) {
          try {
            listener(changes);
          } catch {
            // A listener's failure must not turn a committed change into an error for the caller.
          }
        }
      }
      return result;
    },
    onChanges(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
