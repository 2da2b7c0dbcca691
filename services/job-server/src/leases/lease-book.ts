/**
 * The node side of the job queue: leases. A claim turns a QUEUED job into an ASSIGNED one under a
 * new lease (fencing token) for one node; every later report names the lease, and a report under
 * a lease that is no longer the job's current one is refused (failed_precondition), so a node
 * that lost its lease cannot overwrite the new holder's work. Leases lapse unless renewed
 * (heartbeats, progress); the sweeps here requeue lapsed attempts, enforce the per-attempt time
 * limit and expire jobs past their expires_at.
 *
 * Claims lock the node's row (waiting) and then the job's row with SKIP LOCKED, so replicas
 * over one PostgreSQL never lease one job twice nor put more leases on a node than its capacity.
 */
import { create, equals, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type PreprocessingValidation,
  PreprocessingValidationSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type Assignment,
  AssignmentSchema,
  type JobCancellation,
  JobCancellationSchema,
  JobFailureReason,
  type JobResult,
  JobResultSchema,
  JobState,
  type LeaseExtension,
  LeaseExtensionSchema,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import { LeaseOutcome } from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import { type Kysely, sql } from "kysely";
import { invalidArgument, JobServerError } from "../errors.js";
import {
  approvalOf,
  isLeased,
  isPaid,
  JOB_FAULTS,
  type JobRow,
  jobRowFromDb,
  specOf,
  storedResultOf,
  toBase64,
} from "../jobs/job-row.js";
import type { QueueCore, QueueTx } from "../jobs/queue-core.js";
import { PROTOCOL_VERSION } from "../protocol-version.js";
import type { JobServerTables } from "../store/tables.js";
import { checkProgress, type ProgressInput } from "./lease-input.js";

/** What {@link createLeaseBook} needs. */
export interface LeaseBookOptions {
  readonly core: QueueCore;
  /** Lease duration once accepted; renewals extend by it (LEASE_TIMEOUT_MS). */
  readonly leaseMs: number;
  /** Lease duration of an assignment not yet accepted. */
  readonly acceptMs: number;
  /** The job server's address, stamped on assignments. */
  readonly serverAddress: string;
}

/** A job just leased to a node. */
export interface Claim {
  readonly job: JobRow;
  readonly leaseId: string;
}

/** One lease row, numbers normalised. */
export interface LeaseRow {
  readonly leaseId: string;
  readonly jobId: string;
  readonly nodeAddress: string;
  readonly attempt: number;
  readonly state: string;
  readonly accepted: boolean;
  readonly issuedAtMs: number;
  readonly expiresAtMs: number;
  readonly reason: string;
}

/** The answer to a report under a lease. */
export interface LeaseAnswer {
  readonly shouldContinue: boolean;
  /** The lease's expiry now; undefined when the lease ended. */
  readonly leaseExpiresAtMs: number | undefined;
  readonly job: JobRow;
}

/** What a heartbeat renewed and what it must cancel. */
export interface Renewal {
  readonly extensions: LeaseExtension[];
  readonly cancellations: JobCancellation[];
}

/** UpdateJobStatus's fields. */
export interface StatusInput extends ProgressInput {
  readonly state: JobState;
  readonly failureReason: JobFailureReason;
  readonly errorMessage: string;
}

/** The node side of the queue; see the module comment. */
export interface LeaseBook {
  /**
   * Leases QUEUED job `jobId` to `node` (attempt + 1) unless another took it or the node is at
   * its capacity; the lease lasts the accept timeout plus `extraMs`.
   */
  claim(jobId: string, node: string, extraMs?: number): Promise<Claim | undefined>;
  /** Stores the route approval of a paid job's current lease; undefined if the lease ended. */
  attachApproval(
    jobId: string,
    leaseId: string,
    approval: PreprocessingValidation,
  ): Promise<JobRow | undefined>;
  /**
   * Gives a claim back before the node heard of it (no approval): QUEUED again, the attempt not
   * counted, not placed before `notBeforeMs`, `reason` as its status message.
   */
  abandonClaim(jobId: string, leaseId: string, reason: string, notBeforeMs: number): Promise<void>;
  /** The Assignment a node receives for `job` under its current lease. */
  assignmentOf(job: JobRow): Assignment;
  /** Assignments of `node` it has not accepted yet (re-sent when its stream reopens). */
  pendingAssignments(node: string): Promise<Assignment[]>;
  /** The lease, or undefined. */
  lease(leaseId: string): Promise<LeaseRow | undefined>;
  /**
   * NotifyJobAccepted: accepted, the lease gets its full duration; refused, the job is requeued
   * without using up an attempt.
   * @throws JobServerError not_found, failed_precondition (stale lease).
   */
  accept(
    node: string,
    jobId: string,
    leaseId: string,
    accepted: boolean,
    reason: string,
  ): Promise<LeaseAnswer>;
  /** Heartbeat: renews each lease the node still works under; cancels the others. */
  renew(node: string, leaseIds: readonly string[]): Promise<Renewal>;
  /**
   * ReportProgress: records progress (the job is RUNNING from the first report) and renews the
   * lease; should_continue is false once the job was cancelled, expired or timed out.
   * @throws JobServerError invalid_argument, not_found, failed_precondition (stale lease).
   */
  progress(
    node: string,
    jobId: string,
    leaseId: string,
    input: ProgressInput,
  ): Promise<LeaseAnswer>;
  /**
   * UpdateJobStatus: RUNNING (start) or FAILED (the node gives up: a job fault fails the job, a
   * node error ends the attempt).
   */
  updateStatus(
    node: string,
    jobId: string,
    leaseId: string,
    input: StatusInput,
  ): Promise<LeaseAnswer>;
  /**
   * ReportJobResult. COMPLETED results must pass `verify` (signature, hash, artifacts) first;
   * a free job is then COMPLETED, a paid one VALIDATING. FAILED results end the attempt.
   * Idempotent per lease.
   */
  reportResult(
    node: string,
    jobId: string,
    leaseId: string,
    result: JobResult | undefined,
    verify: (job: JobRow, result: JobResult) => Promise<void>,
  ): Promise<JobRow>;
  /**
   * ReportCompletion: closes the lease. A lease still working is released (the job is requeued
   * at once; the attempt counts if the job had reached RUNNING). Idempotent per lease.
   */
  close(
    node: string,
    jobId: string,
    leaseId: string,
    outcome: LeaseOutcome,
    computeTimeMs: number,
    reason: string,
  ): Promise<JobRow>;
  /** Revoked leases of `nodes` not yet announced, as cancellations; marks them announced. */
  takeCancellations(
    nodes: readonly string[],
  ): Promise<Array<{ node: string; cancellation: JobCancellation }>>;
  /** Jobs `node` holds an active lease on. */
  activeJobIds(node: string): Promise<ReadonlySet<string>>;
  /** Whether `node` holds lease `leaseId` on job `jobId` now. */
  holdsLease(node: string, jobId: string, leaseId: string): Promise<boolean>;
  /** Whether `node` ever held a lease on job `jobId`. */
  everLeased(node: string, jobId: string): Promise<boolean>;
  /** Whether `node` ever held a lease on a job whose spec reads content `digest`. */
  everLeasedInput(node: string, digest: string): Promise<boolean>;
  /** Requeues (or fails) jobs whose lease lapsed; returns how many. */
  lapseExpired(): Promise<number>;
  /** Fails attempts that ran past max_duration_ms + `graceMs`; returns how many. */
  enforceTimeLimits(graceMs: number): Promise<number>;
  /** Fails unfinished jobs past their expires_at (NO_ELIGIBLE_NODE or EXPIRED); returns how many. */
  expireJobs(): Promise<number>;
}

const SWEEP_BATCH = 100;

function leaseFromDb(row: {
  lease_id: string;
  job_id: string;
  node_address: string;
  attempt: number;
  state: string;
  accepted: number;
  issued_at_ms: number | string;
  expires_at_ms: number | string;
  reason: string;
}): LeaseRow {
  return {
    leaseId: row.lease_id,
    jobId: row.job_id,
    nodeAddress: row.node_address,
    attempt: row.attempt,
    state: row.state,
    accepted: row.accepted === 1,
    issuedAtMs: Number(row.issued_at_ms),
    expiresAtMs: Number(row.expires_at_ms),
    reason: row.reason,
  };
}

function staleLease(jobId: string, leaseId: string, why: string): JobServerError {
  return new JobServerError(
    "failed_precondition",
    `lease ${leaseId} is not the current lease of job ${jobId}: ${why}; stop working on it`,
  );
}

/** The node's report as the job server keeps it (and compares replays with). */
function keptReport(result: JobResult, node: string, attempt: number): JobResult {
  return create(JobResultSchema, {
    ...result,
    protocolVersion: result.protocolVersion ?? PROTOCOL_VERSION,
    nodeAddress: node,
    attempt,
    settlementTransactionId: "",
  });
}

/** The node side of the queue over `options.core`. */
export function createLeaseBook(options: LeaseBookOptions): LeaseBook {
  const { core, leaseMs, acceptMs, serverAddress } = options;
  const store = core.store;
  const db = store.db;

  async function readLease(
    leaseId: string,
    executor: Kysely<JobServerTables> = db,
  ): Promise<LeaseRow | undefined> {
    const row = await executor
      .selectFrom("job_lease")
      .selectAll()
      .where("lease_id", "=", leaseId)
      .executeTakeFirst();
    return row === undefined ? undefined : leaseFromDb(row);
  }

  /** The job locked, if `node` holds `leaseId` on it now; throws the reason otherwise. */
  async function fenced(
    tx: QueueTx,
    node: string,
    jobId: string,
    leaseId: string,
  ): Promise<JobRow> {
    const job = await tx.lockJob(jobId);
    if (job === undefined) throw new JobServerError("not_found", `job ${jobId} does not exist`);
    if (job.lease_id !== leaseId || job.lease_node !== node || !isLeased(job.state)) {
      const lease = await readLease(leaseId, tx.trx);
      throw staleLease(
        jobId,
        leaseId,
        lease === undefined || lease.nodeAddress !== node
          ? "it is unknown"
          : `it ended (${lease.state}${lease.reason ? `: ${lease.reason}` : ""})`,
      );
    }
    if ((job.lease_expires_at_ms ?? 0) < tx.now) {
      throw staleLease(jobId, leaseId, "it expired");
    }
    return job;
  }

  /** The answer for a lease that was revoked (cancelled, expired, timed out): stop. */
  async function revokedAnswer(
    node: string,
    jobId: string,
    leaseId: string,
  ): Promise<LeaseAnswer | undefined> {
    const lease = await readLease(leaseId);
    if (lease === undefined || lease.nodeAddress !== node || lease.jobId !== jobId)
      return undefined;
    if (lease.state !== "revoked") return undefined;
    const job = await core.transact(async (tx) => {
      await tx.trx
        .updateTable("job_lease")
        .set({ notified: 1 })
        .where("lease_id", "=", leaseId)
        .execute();
      return tx.lockJob(jobId);
    });
    if (job === undefined) return undefined;
    return { shouldContinue: false, leaseExpiresAtMs: undefined, job };
  }

  async function renewLease(
    tx: QueueTx,
    job: JobRow,
    patch: Parameters<QueueTx["write"]>[1],
    extras?: Parameters<QueueTx["write"]>[2],
  ) {
    const expires = tx.now + leaseMs;
    await tx.trx
      .updateTable("job_lease")
      .set({ expires_at_ms: expires, accepted: 1 })
      .where("lease_id", "=", job.lease_id as string)
      .execute();
    const next = { ...patch, lease_expires_at_ms: expires };
    return extras === undefined && Object.keys(patch).length === 0
      ? tx.writeQuietly(job, next)
      : tx.write(job, next, extras);
  }

  const book: LeaseBook = {
    async claim(jobId, node, extraMs = 0) {
      return core.transact(async (tx) => {
        const { trx, now } = tx;
        // The node's row stays locked until commit: concurrent claims for it (other replicas)
        // count its leases one after another.
        const nodeRow = await store
          .forUpdate(
            trx
              .selectFrom("job_node")
              .select((eb) => [
                "capacity",
                eb
                  .selectFrom("job_lease")
                  .select(eb.fn.countAll<number | string>().as("n"))
                  .where("job_lease.node_address", "=", node)
                  .where("job_lease.state", "=", "active")
                  .as("held"),
              ])
              .where("address", "=", node),
          )
          .executeTakeFirst();
        if (nodeRow === undefined) return undefined;
        if (Number(nodeRow.held ?? 0) >= nodeRow.capacity) return undefined;
        const job = await tx.lockJob(jobId, { skipLocked: true });
        if (job === undefined || job.state !== JobState.QUEUED || job.lease_id !== null) {
          return undefined;
        }
        const attempt = job.attempt + 1;
        const expires = now + acceptMs + extraMs;
        const leaseId = await tx.insertLease(job, node, attempt, expires);
        const schedulingNote = job.failure_reason === JobFailureReason.UNSPECIFIED;
        const written = await tx.write(job, {
          state: JobState.ASSIGNED,
          attempt,
          lease_id: leaseId,
          lease_node: node,
          lease_expires_at_ms: expires,
          assigned_at_ms: now,
          started_at_ms: null,
          ...(schedulingNote ? { error_message: "" } : {}),
        });
        return { job: written, leaseId };
      });
    },

    async attachApproval(jobId, leaseId, approval) {
      return core.transact(async (tx) => {
        const job = await tx.lockJob(jobId);
        if (job === undefined || job.lease_id !== leaseId || !isLeased(job.state)) return undefined;
        const expires = tx.now + acceptMs;
        await tx.trx
          .updateTable("job_lease")
          .set({ expires_at_ms: expires })
          .where("lease_id", "=", leaseId)
          .execute();
        return tx.writeQuietly(job, {
          approval: toBase64(toBinary(PreprocessingValidationSchema, approval)),
          lease_expires_at_ms: expires,
        });
      });
    },

    async abandonClaim(jobId, leaseId, reason, notBeforeMs) {
      await core.transact(async (tx) => {
        const job = await tx.lockJob(jobId);
        if (job === undefined || job.lease_id !== leaseId || !isLeased(job.state)) return;
        const requeued = await tx.endAttempt(job, {
          leaseState: "released",
          reason,
          counts: false,
          failure: JobFailureReason.UNSPECIFIED,
        });
        if (requeued.state === JobState.QUEUED) {
          await tx.writeQuietly(requeued, { not_before_ms: notBeforeMs });
          if (requeued.failure_reason === JobFailureReason.UNSPECIFIED) {
            await tx.write(requeued, { error_message: reason });
          }
        }
      });
    },

    assignmentOf(job) {
      const approval = isPaid(job) ? approvalOf(job) : undefined;
      return create(AssignmentSchema, {
        protocolVersion: PROTOCOL_VERSION,
        jobId: job.job_id,
        attempt: job.attempt,
        leaseId: job.lease_id ?? "",
        leaseDurationMs: BigInt(leaseMs),
        leaseExpiresAt: timestampFromMs(job.lease_expires_at_ms ?? core.now()),
        spec: specOf(job),
        ...(approval === undefined ? {} : { approval }),
        assignedAt: timestampFromMs(job.assigned_at_ms ?? core.now()),
        issuerAddress: serverAddress,
        ownerAddress: job.owner_address,
      });
    },

    async pendingAssignments(node) {
      const rows = await db
        .selectFrom("job_lease")
        .innerJoin("job_record", "job_record.lease_id", "job_lease.lease_id")
        .selectAll("job_record")
        .where("job_lease.node_address", "=", node)
        .where("job_lease.state", "=", "active")
        .where("job_lease.accepted", "=", 0)
        .execute();
      const now = core.now();
      return rows
        .map(jobRowFromDb)
        .filter((job) => {
          if (!isPaid(job)) return true;
          const terms = approvalOf(job)?.terms;
          return (
            terms?.route?.computeNodeAddress === node &&
            terms.expiresAt !== undefined &&
            Number(terms.expiresAt.seconds) * 1000 > now
          );
        })
        .map((job) => book.assignmentOf(job));
    },

    lease: readLease,

    async accept(node, jobId, leaseId, accepted, reason) {
      return core.transact(async (tx) => {
        const job = await fenced(tx, node, jobId, leaseId);
        if (accepted) {
          const renewed = await renewLease(tx, job, {});
          return {
            shouldContinue: true,
            leaseExpiresAtMs: renewed.lease_expires_at_ms ?? undefined,
            job: renewed,
          };
        }
        const why =
          reason === ""
            ? `node ${node} refused the assignment`
            : `node ${node} refused the assignment: ${reason.slice(0, 512)}`;
        const requeued = await tx.endAttempt(job, {
          leaseState: "refused",
          reason: why,
          counts: false,
          failure: JobFailureReason.UNSPECIFIED,
        });
        return { shouldContinue: false, leaseExpiresAtMs: undefined, job: requeued };
      });
    },

    async renew(node, leaseIds) {
      const extensions: LeaseExtension[] = [];
      const cancellations: JobCancellation[] = [];
      for (const leaseId of new Set(leaseIds)) {
        const lease = await readLease(leaseId);
        if (lease === undefined || lease.nodeAddress !== node) {
          cancellations.push(
            create(JobCancellationSchema, {
              jobId: lease?.jobId ?? "",
              leaseId,
              reason: "unknown lease",
              cancelledAt: timestampFromMs(core.now()),
            }),
          );
          continue;
        }
        if (lease.state === "reported") continue;
        const outcome = await core.transact(async (tx) => {
          if (lease.state === "active") {
            const job = await tx.lockJob(lease.jobId);
            if (job !== undefined && job.lease_id === leaseId && isLeased(job.state)) {
              if ((job.lease_expires_at_ms ?? 0) < tx.now) {
                await tx.endAttempt(job, {
                  leaseState: "lapsed",
                  reason: `lease of node ${node} expired before it was renewed`,
                  counts: true,
                  failure: JobFailureReason.UNSPECIFIED,
                });
                return { cancel: "lease expired" };
              }
              const full = lease.accepted || job.state === JobState.RUNNING;
              const expires = tx.now + (full ? leaseMs : acceptMs);
              await tx.trx
                .updateTable("job_lease")
                .set({ expires_at_ms: expires })
                .where("lease_id", "=", leaseId)
                .execute();
              await tx.writeQuietly(job, { lease_expires_at_ms: expires });
              return { extend: expires };
            }
          }
          const latest = await tx.trx
            .selectFrom("job_lease")
            .select(["state", "reason"])
            .where("lease_id", "=", leaseId)
            .executeTakeFirst();
          await tx.trx
            .updateTable("job_lease")
            .set({ notified: 1 })
            .where("lease_id", "=", leaseId)
            .execute();
          return { cancel: latest?.reason || `lease ${latest?.state ?? "ended"}` };
        });
        if ("extend" in outcome) {
          extensions.push(
            create(LeaseExtensionSchema, {
              jobId: lease.jobId,
              leaseId,
              leaseExpiresAt: timestampFromMs(outcome.extend),
            }),
          );
        } else {
          cancellations.push(
            create(JobCancellationSchema, {
              jobId: lease.jobId,
              leaseId,
              reason: outcome.cancel,
              cancelledAt: timestampFromMs(core.now()),
            }),
          );
        }
      }
      return { extensions, cancellations };
    },

    async progress(node, jobId, leaseId, input) {
      checkProgress(input);
      const revoked = await revokedAnswer(node, jobId, leaseId);
      if (revoked !== undefined) return revoked;
      return core.transact(async (tx) => {
        const job = await fenced(tx, node, jobId, leaseId);
        const metrics = {
          ...(JSON.parse(job.metrics) as Record<string, number>),
          ...input.metrics,
        };
        const written = await renewLease(
          tx,
          job,
          {
            state: JobState.RUNNING,
            ...(job.started_at_ms === null ? { started_at_ms: tx.now } : {}),
            progress: input.progress,
            current_epoch: input.currentEpoch,
            current_round: input.currentRound,
            metrics: JSON.stringify(metrics),
          },
          {
            liveMetrics: { ...input.metrics },
            logs: input.logs,
            visualizationData: input.visualizationData,
            visualizationMediaType: input.visualizationMediaType,
          },
        );
        return {
          shouldContinue: true,
          leaseExpiresAtMs: written.lease_expires_at_ms ?? undefined,
          job: written,
        };
      });
    },

    async updateStatus(node, jobId, leaseId, input) {
      if (input.state !== JobState.RUNNING && input.state !== JobState.FAILED) {
        throw invalidArgument("state", "must be JOB_STATE_RUNNING or JOB_STATE_FAILED");
      }
      checkProgress(input);
      const revoked = await revokedAnswer(node, jobId, leaseId);
      if (revoked !== undefined) return revoked;
      return core.transact(async (tx) => {
        const job = await fenced(tx, node, jobId, leaseId);
        const extras = {
          liveMetrics: { ...input.metrics },
          logs: input.logs,
          visualizationData: input.visualizationData,
          visualizationMediaType: input.visualizationMediaType,
        };
        if (input.state === JobState.RUNNING) {
          const metrics = {
            ...(JSON.parse(job.metrics) as Record<string, number>),
            ...input.metrics,
          };
          const written = await renewLease(
            tx,
            job,
            {
              state: JobState.RUNNING,
              ...(job.started_at_ms === null ? { started_at_ms: tx.now } : {}),
              progress: input.progress,
              current_epoch: input.currentEpoch,
              metrics: JSON.stringify(metrics),
            },
            extras,
          );
          return {
            shouldContinue: true,
            leaseExpiresAtMs: written.lease_expires_at_ms ?? undefined,
            job: written,
          };
        }
        const failure =
          input.failureReason === JobFailureReason.UNSPECIFIED
            ? JobFailureReason.NODE_ERROR
            : input.failureReason;
        const message = (
          input.errorMessage || `node ${node} reported ${JobFailureReason[failure]}`
        ).slice(0, 4096);
        const ended = await tx.endAttempt(job, {
          leaseState: "reported",
          reason: message,
          counts: true,
          failure,
          jobFault: JOB_FAULTS.has(failure),
        });
        return { shouldContinue: false, leaseExpiresAtMs: undefined, job: ended };
      });
    },

    async reportResult(node, jobId, leaseId, result, verify) {
      if (result === undefined) throw invalidArgument("result", "is required");
      if (result.jobId !== jobId) throw invalidArgument("result.job_id", "must equal job_id");
      if (result.state !== JobState.COMPLETED && result.state !== JobState.FAILED) {
        throw invalidArgument("result.state", "must be JOB_STATE_COMPLETED or JOB_STATE_FAILED");
      }
      const lease = await readLease(leaseId);
      const current = await db
        .selectFrom("job_record")
        .selectAll()
        .where("job_id", "=", jobId)
        .executeTakeFirst();
      if (current === undefined)
        throw new JobServerError("not_found", `job ${jobId} does not exist`);
      const job = jobRowFromDb(current);
      if (lease === undefined || lease.nodeAddress !== node || lease.jobId !== jobId) {
        throw staleLease(jobId, leaseId, "it is unknown");
      }
      if (lease.state === "reported" || lease.state === "closed") {
        // A replay: the same report answers the job as it is now.
        const stored = storedResultOf(job);
        const replay =
          result.state === JobState.FAILED
            ? stored === undefined
            : stored !== undefined &&
              stored.attempt === lease.attempt &&
              equals(JobResultSchema, stored, keptReport(result, node, lease.attempt));
        if (replay) return job;
        throw new JobServerError(
          "failed_precondition",
          `lease ${leaseId} already reported a different result for job ${jobId}`,
        );
      }
      if (lease.state !== "active" || job.lease_id !== leaseId) {
        throw staleLease(
          jobId,
          leaseId,
          `it ended (${lease.state}${lease.reason ? `: ${lease.reason}` : ""})`,
        );
      }
      if (result.state === JobState.COMPLETED) await verify(job, result);
      return core.transact(async (tx) => {
        const locked = await fenced(tx, node, jobId, leaseId);
        if (result.state === JobState.FAILED) {
          const failure =
            result.failureReason === JobFailureReason.UNSPECIFIED
              ? JobFailureReason.NODE_ERROR
              : result.failureReason;
          const message = (
            result.errorMessage || `node ${node} reported ${JobFailureReason[failure]}`
          ).slice(0, 4096);
          return tx.endAttempt(locked, {
            leaseState: "reported",
            reason: message,
            counts: true,
            failure,
            jobFault: JOB_FAULTS.has(failure),
          });
        }
        const kept = keptReport(result, node, locked.attempt);
        await tx.endLease(locked, leaseId, node, "reported", "result reported");
        const paid = isPaid(locked);
        await tx.bumpNode(node, {
          completed: paid ? 0 : 1,
          computeTimeMs: Number(result.totalComputeTimeMs),
        });
        return tx.write(locked, {
          state: paid ? JobState.VALIDATING : JobState.COMPLETED,
          progress: 1,
          result: toBase64(toBinary(JobResultSchema, kept)),
          lease_id: null,
          lease_node: null,
          lease_expires_at_ms: null,
          failure_reason: JobFailureReason.UNSPECIFIED,
          error_message: "",
          ...(paid
            ? { settlement: "validate", settlement_retry_at_ms: tx.now }
            : { ended_at_ms: tx.now }),
          ...(Object.keys(result.finalMetrics).length > 0
            ? {
                metrics: JSON.stringify({
                  ...(JSON.parse(locked.metrics) as object),
                  ...result.finalMetrics,
                }),
              }
            : {}),
        });
      });
    },

    async close(node, jobId, leaseId, outcome, computeTimeMs, reason) {
      if (outcome === LeaseOutcome.UNSPECIFIED || LeaseOutcome[outcome] === undefined) {
        throw invalidArgument("outcome", "must be RESULT_REPORTED, CANCELLED or RELEASED");
      }
      const lease = await readLease(leaseId);
      if (lease === undefined)
        throw new JobServerError("not_found", `lease ${leaseId} does not exist`);
      if (lease.nodeAddress !== node) {
        throw new JobServerError("permission_denied", `lease ${leaseId} belongs to another node`);
      }
      if (lease.jobId !== jobId)
        throw invalidArgument("job_id", `lease ${leaseId} is for another job`);
      return core.transact(async (tx) => {
        const job = await tx.lockJob(jobId);
        if (job === undefined) throw new JobServerError("not_found", `job ${jobId} does not exist`);
        const latest = await tx.trx
          .selectFrom("job_lease")
          .select(["state"])
          .where("lease_id", "=", leaseId)
          .executeTakeFirstOrThrow();
        const closeRow = async (state: string) => {
          await tx.trx
            .updateTable("job_lease")
            .set({
              state,
              notified: 1,
              compute_time_ms: Math.max(0, Math.trunc(computeTimeMs)),
              ended_at_ms: sql`coalesce(ended_at_ms, ${tx.now})`,
            })
            .where("lease_id", "=", leaseId)
            .execute();
        };
        if (latest.state === "closed" || latest.state === "released") return job;
        if (latest.state !== "active") {
          await closeRow("closed");
          await tx.bumpNode(node, {
            computeTimeMs: latest.state === "reported" ? 0 : computeTimeMs,
          });
          return job;
        }
        // Still working under it: the node gives the job back.
        const why =
          outcome === LeaseOutcome.RELEASED
            ? `node ${node} released the job${reason ? `: ${reason.slice(0, 512)}` : ""}`
            : `node ${node} stopped without a result`;
        const requeued = await tx.endAttempt(job, {
          leaseState: "released",
          reason: why,
          counts: job.state === JobState.RUNNING,
          failure: JobFailureReason.UNSPECIFIED,
        });
        await closeRow("released");
        await tx.bumpNode(node, { computeTimeMs });
        return requeued;
      });
    },

    async takeCancellations(nodes) {
      if (nodes.length === 0) return [];
      const rows = await db
        .selectFrom("job_lease")
        .select(["lease_id", "job_id", "node_address", "reason", "ended_at_ms"])
        .where("state", "=", "revoked")
        .where("notified", "=", 0)
        .where("node_address", "in", [...nodes])
        .limit(SWEEP_BATCH)
        .execute();
      if (rows.length === 0) return [];
      await db
        .updateTable("job_lease")
        .set({ notified: 1 })
        .where(
          "lease_id",
          "in",
          rows.map((row) => row.lease_id),
        )
        .execute();
      return rows.map((row) => ({
        node: row.node_address,
        cancellation: create(JobCancellationSchema, {
          jobId: row.job_id,
          leaseId: row.lease_id,
          reason: row.reason,
          cancelledAt: timestampFromMs(Number(row.ended_at_ms ?? core.now())),
        }),
      }));
    },

    async activeJobIds(node) {
      const rows = await db
        .selectFrom("job_lease")
        .select("job_id")
        .where("node_address", "=", node)
        .where("state", "=", "active")
        .execute();
      return new Set(rows.map((row) => row.job_id));
    },

    async holdsLease(node, jobId, leaseId) {
      const job = await db
        .selectFrom("job_record")
        .select(["lease_id", "lease_node", "state", "lease_expires_at_ms"])
        .where("job_id", "=", jobId)
        .executeTakeFirst();
      return (
        job !== undefined &&
        job.lease_id === leaseId &&
        job.lease_node === node &&
        isLeased(job.state) &&
        Number(job.lease_expires_at_ms ?? 0) >= core.now()
      );
    },

    async everLeased(node, jobId) {
      const row = await db
        .selectFrom("job_lease")
        .select("lease_id")
        .where("node_address", "=", node)
        .where("job_id", "=", jobId)
        .limit(1)
        .executeTakeFirst();
      return row !== undefined;
    },

    async everLeasedInput(node, digest) {
      const row = await db
        .selectFrom("job_lease")
        .innerJoin("job_input", "job_input.job_id", "job_lease.job_id")
        .select("job_lease.lease_id")
        .where("job_lease.node_address", "=", node)
        .where("job_input.digest", "=", digest)
        .limit(1)
        .executeTakeFirst();
      return row !== undefined;
    },

    async lapseExpired() {
      const now = core.now();
      const due = await db
        .selectFrom("job_record")
        .select("job_id")
        .where("state", "in", [JobState.ASSIGNED, JobState.RUNNING])
        .where("lease_expires_at_ms", "<", now)
        .limit(SWEEP_BATCH)
        .execute();
      let count = 0;
      for (const { job_id } of due) {
        const done = await core.transact(async (tx) => {
          const job = await tx.lockJob(job_id, { skipLocked: true });
          if (
            job === undefined ||
            !isLeased(job.state) ||
            (job.lease_expires_at_ms ?? 0) >= tx.now
          ) {
            return false;
          }
          await tx.endAttempt(job, {
            leaseState: "lapsed",
            reason: `the lease of node ${job.lease_node} expired: no heartbeat or report within ${leaseMs} ms`,
            counts: true,
            failure: JobFailureReason.UNSPECIFIED,
          });
          return true;
        });
        if (done) count += 1;
      }
      return count;
    },

    async enforceTimeLimits(graceMs) {
      const now = core.now();
      const due = await db
        .selectFrom("job_record")
        .select("job_id")
        .where("state", "in", [JobState.ASSIGNED, JobState.RUNNING])
        .where(
          sql<number>`coalesce(started_at_ms, assigned_at_ms) + max_duration_ms`,
          "<",
          now - graceMs,
        )
        .limit(SWEEP_BATCH)
        .execute();
      let count = 0;
      for (const { job_id } of due) {
        const done = await core.transact(async (tx) => {
          const job = await tx.lockJob(job_id, { skipLocked: true });
          if (job === undefined || !isLeased(job.state)) return false;
          const since = job.started_at_ms ?? job.assigned_at_ms ?? tx.now;
          if (since + job.max_duration_ms >= tx.now - graceMs) return false;
          await tx.failJob(
            job,
            JobFailureReason.TIME_LIMIT_EXCEEDED,
            `attempt ${job.attempt} ran longer than its limit of ${job.max_duration_ms} ms`,
            { leaseReason: "time limit exceeded" },
          );
          return true;
        });
        if (done) count += 1;
      }
      return count;
    },

    async expireJobs() {
      const now = core.now();
      const due = await db
        .selectFrom("job_record")
        .select("job_id")
        .where("state", "in", [
          JobState.PENDING,
          JobState.QUEUED,
          JobState.ASSIGNED,
          JobState.RUNNING,
        ])
        .where("expires_at_ms", "<", now)
        .limit(SWEEP_BATCH)
        .execute();
      let count = 0;
      for (const { job_id } of due) {
        const done = await core.transact(async (tx) => {
          const job = await tx.lockJob(job_id, { skipLocked: true });
          if (job === undefined || job.expires_at_ms >= tx.now) return false;
          if (
            ![JobState.PENDING, JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING].includes(
              job.state,
            )
          ) {
            return false;
          }
          const neverPlaced = job.state === JobState.QUEUED && job.attempt === 0;
          if (neverPlaced) {
            const why = job.error_message || "no connected node could run it";
            await tx.failJob(
              job,
              JobFailureReason.NO_ELIGIBLE_NODE,
              `no eligible node before expires_at: ${why}`,
            );
          } else {
            await tx.failJob(
              job,
              JobFailureReason.EXPIRED,
              "expires_at passed before the job completed",
              {
                leaseReason: "expired",
              },
            );
          }
          return true;
        });
        if (done) count += 1;
      }
      return count;
    },
  };
  return book;
}
