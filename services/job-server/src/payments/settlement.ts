/**
 * Settles paid jobs with the validators and the wallet, exactly once per job:
 *
 * - `validate` (a paid job VALIDATING): the registry's RequestCompletionValidation with the
 *   result manifest and the Job record as evidence; approved → ReleaseEscrow with that
 *   validation → COMPLETED with the release's transaction id; rejected → FAILED
 *   VALIDATION_REJECTED and a refund.
 * - `refund` (a paid job FAILED or CANCELLED): RefundEscrow as the arbiter → the refund's
 *   transaction id.
 *
 * What is still to do is durable (`job_record.settlement`), so a crash or an unreachable peer
 * only delays it: the sweeper retries due settlements with back-off. Every step is idempotent
 * (the registry keeps one verdict per job, the wallet releases or refunds an escrow once), and the
 * job's row changes only from the state it was read in, so replicas retrying the same job cannot
 * complete it (or pay it) twice.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { resultManifest } from "@tessera/identity/result-manifest";
import type { CompletionValidation } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  JobFailureReason,
  JobResultSchema,
  JobSchema,
  JobState,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import { ExecutionEvidenceSchema } from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import type { Logger } from "@tessera/runtime";
import type { RegistryPort, WalletPort } from "@tessera/sdk/peer-clients";
import { PeerError } from "@tessera/sdk/peer-error";
import {
  approvalOf,
  type JobRow,
  jobOf,
  jobRowFromDb,
  storedResultOf,
  toBase64,
} from "../jobs/job-row.js";
import type { QueueCore } from "../jobs/queue-core.js";
import type { NodeBook } from "../nodes/node-book.js";

/** Media type of the result manifest given to validators as evidence. */
export const RESULT_MANIFEST_MEDIA_TYPE = "text/vnd.tessera.result-manifest";
/** Media type of the Job record given to validators as evidence. */
export const JOB_RECORD_MEDIA_TYPE = "application/vnd.tessera.job+proto";

/** What {@link createSettlement} needs. */
export interface SettlementOptions {
  readonly core: QueueCore;
  readonly nodes: NodeBook;
  readonly wallet: WalletPort | undefined;
  readonly registry: RegistryPort | undefined;
  readonly logger: Logger;
  /** First retry delay after a peer could not be reached; doubles up to `maxRetryMs`. */
  readonly retryBaseMs?: number | undefined;
  readonly maxRetryMs?: number | undefined;
}

/** The settler; see the module comment. */
export interface Settlement {
  /** Settles the job now if it has something to settle (one run per job at a time). */
  settle(jobId: string): Promise<void>;
  /** {@link settle} in the background. */
  kick(jobId: string): void;
  /** Starts every settlement that is due; returns how many. */
  retryDue(): Promise<number>;
  /** Resolves once no settlement runs. */
  idle(): Promise<void>;
}

const DUE_BATCH = 20;

/** The settler over the queue and the peers. */
export function createSettlement(options: SettlementOptions): Settlement {
  const { core, nodes, wallet, registry, logger } = options;
  const retryBaseMs = options.retryBaseMs ?? 1000;
  const maxRetryMs = options.maxRetryMs ?? 60_000;
  const running = new Map<string, Promise<void>>();
  const failures = new Map<string, number>();
  const db = core.store.db;

  async function read(jobId: string): Promise<JobRow | undefined> {
    const row = await db
      .selectFrom("job_record")
      .selectAll()
      .where("job_id", "=", jobId)
      .executeTakeFirst();
    return row === undefined ? undefined : jobRowFromDb(row);
  }

  /** Tries again later, backing off per job. */
  async function later(job: JobRow, why: string): Promise<void> {
    const tries = (failures.get(job.job_id) ?? 0) + 1;
    failures.set(job.job_id, tries);
    const delay = Math.min(maxRetryMs, retryBaseMs * 2 ** Math.min(tries - 1, 10));
    logger.warn({ jobId: job.job_id, retryInMs: delay, reason: why }, "settlement postponed");
    await core.transact(async (tx) => {
      const locked = await tx.lockJob(job.job_id);
      if (locked === undefined || locked.settlement !== job.settlement) return;
      await tx.writeQuietly(locked, { settlement_retry_at_ms: tx.now + delay });
    });
  }

  async function refund(job: JobRow): Promise<void> {
    if (wallet === undefined) {
      logger.error({ jobId: job.job_id }, "a paid job needs a refund but no wallet is configured");
      await later(job, "no wallet configured");
      return;
    }
    const validation =
      job.failure_reason === JobFailureReason.VALIDATION_REJECTED
        ? storedResultOf(job)?.completionValidation
        : undefined;
    let transactionId: string;
    try {
      transactionId = await wallet.refundEscrow(
        job.escrow_id,
        job.refund_reason || "job not completed",
        validation,
      );
    } catch (error) {
      if (!(error instanceof PeerError)) throw error;
      if (error.kind === "unreachable") return later(job, error.message);
      // The wallet answered no: retrying cannot change it (e.g. the escrow was released).
      logger.error(
        { jobId: job.job_id, escrowId: job.escrow_id, reason: error.message },
        "the wallet refused the refund; giving up on it",
      );
      transactionId = "";
    }
    await core.transact(async (tx) => {
      const locked = await tx.lockJob(job.job_id);
      if (locked === undefined || locked.settlement !== "refund") return;
      await tx.writeQuietly(locked, { settlement: null, settlement_tx_id: transactionId });
    });
    failures.delete(job.job_id);
  }

  /** Ends a VALIDATING job FAILED with `reason` (its escrow to be refunded), then refunds. */
  async function reject(
    job: JobRow,
    reason: JobFailureReason,
    message: string,
    validation?: CompletionValidation,
  ): Promise<void> {
    const failed = await core.transact(async (tx) => {
      const locked = await tx.lockJob(job.job_id);
      if (locked === undefined || locked.state !== JobState.VALIDATING) return undefined;
      const stored = storedResultOf(locked);
      const withVerdict =
        stored === undefined || validation === undefined
          ? locked
          : await tx.writeQuietly(locked, {
              result: toBase64(
                toBinary(
                  JobResultSchema,
                  create(JobResultSchema, { ...stored, completionValidation: validation }),
                ),
              ),
            });
      return tx.failJob(withVerdict, reason, message, {
        refundReason:
          reason === JobFailureReason.VALIDATION_REJECTED ? "validation rejected" : message,
      });
    });
    if (failed !== undefined) await refund(failed);
  }

  async function validate(job: JobRow): Promise<void> {
    const result = storedResultOf(job);
    const approval = approvalOf(job);
    const completion = result?.computeCompletion;
    if (result === undefined || completion === undefined || approval === undefined) {
      await reject(
        job,
        JobFailureReason.VALIDATION_REJECTED,
        "the job has no route approval or signed completion to validate",
      );
      return;
    }
    if (registry === undefined || wallet === undefined) {
      await later(job, "no registry or wallet configured");
      return;
    }
    const manifest = resultManifest(
      result.artifacts.map((artifact) => ({
        name: artifact.name,
        digest: artifact.content?.digest ?? "",
      })),
    );
    const evidence = create(ExecutionEvidenceSchema, {
      result: { case: "resultData", value: new TextEncoder().encode(manifest) },
      resultMediaType: RESULT_MANIFEST_MEDIA_TYPE,
      input: { case: "inputData", value: toBinary(JobSchema, jobOf(job)) },
      inputMediaType: JOB_RECORD_MEDIA_TYPE,
    });
    let validation: CompletionValidation;
    try {
      validation = await registry.requestCompletion(completion, approval, evidence);
    } catch (error) {
      if (!(error instanceof PeerError)) throw error;
      const transient = error.kind === "unreachable" || error.code === "resource_exhausted";
      if (transient) {
        if (core.now() > job.expires_at_ms) {
          await reject(
            job,
            JobFailureReason.EXPIRED,
            `expires_at passed while the validators could not be reached (${error.message})`,
          );
          return;
        }
        await later(job, error.message);
        return;
      }
      await reject(
        job,
        JobFailureReason.VALIDATION_REJECTED,
        `the validators could not approve the completion: ${error.message}`,
      );
      return;
    }
    if (validation.terms?.approved !== true) {
      await reject(
        job,
        JobFailureReason.VALIDATION_REJECTED,
        "the validators rejected the result",
        validation,
      );
      return;
    }
    let transactionId: string;
    try {
      transactionId = await wallet.releaseEscrow(job.escrow_id, validation);
    } catch (error) {
      if (!(error instanceof PeerError)) throw error;
      if (error.kind === "unreachable") return later(job, error.message);
      await reject(
        job,
        JobFailureReason.PAYMENT,
        `the wallet refused to release escrow ${job.escrow_id}: ${error.message}`,
      );
      return;
    }
    const completed = await core.transact(async (tx) => {
      const locked = await tx.lockJob(job.job_id);
      if (locked === undefined || locked.state !== JobState.VALIDATING) return undefined;
      const stored = storedResultOf(locked) ?? result;
      const node = stored.nodeAddress;
      if (node !== "") await tx.bumpNode(node, { completed: 1 });
      return tx.write(locked, {
        state: JobState.COMPLETED,
        ended_at_ms: tx.now,
        settlement: null,
        settlement_tx_id: transactionId,
        result: toBase64(
          toBinary(
            JobResultSchema,
            create(JobResultSchema, { ...stored, completionValidation: validation }),
          ),
        ),
      });
    });
    failures.delete(job.job_id);
    const computeAmount = validation.terms.paymentTree?.computeAmount ?? "";
    if (completed !== undefined && /^[0-9]{1,78}$/.test(computeAmount)) {
      await nodes.addEarnings(result.nodeAddress, BigInt(computeAmount));
    }
  }

  async function run(jobId: string): Promise<void> {
    const job = await read(jobId);
    if (job === undefined || job.settlement === null) return;
    if (job.settlement === "refund") await refund(job);
    else if (job.settlement === "validate" && job.state === JobState.VALIDATING)
      await validate(job);
  }

  const settlement: Settlement = {
    settle(jobId) {
      const current = running.get(jobId);
      if (current !== undefined) return current;
      const started = run(jobId)
        .catch((error: unknown) => {
          logger.error({ err: error, jobId }, "settlement failed");
        })
        .finally(() => running.delete(jobId));
      running.set(jobId, started);
      return started;
    },
    kick(jobId) {
      void settlement.settle(jobId);
    },
    async retryDue() {
      const due = await db
        .selectFrom("job_record")
        .select("job_id")
        .where("settlement", "is not", null)
        .where("settlement_retry_at_ms", "<=", core.now())
        .orderBy("settlement_retry_at_ms", "asc")
        .limit(DUE_BATCH)
        .execute();
      for (const { job_id } of due) settlement.kick(job_id);
      return due.length;
    },
    async idle() {
      while (running.size > 0) await Promise.allSettled([...running.values()]);
    },
  };
  return settlement;
}
