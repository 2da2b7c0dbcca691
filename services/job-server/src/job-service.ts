/**
 * JobService handlers: what clients call. The queue (./jobs) decides; this file checks protocol
 * versions, takes the verified caller from the signed-request interceptor (@tessera/auth) as the
 * job's owner, checks paid jobs' escrows with the wallet before anything is stored, and maps
 * errors with {@link toConnectError}. Every RPC needs a signed caller.
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { requireCaller } from "@tessera/auth";
import { JobState } from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  type JobService,
  type StreamJobUpdatesResponse,
  StreamJobUpdatesResponseSchema,
} from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import type { WalletPort } from "@tessera/sdk/peer-clients";
import { translate, translateStream } from "./connect-errors.js";
import { invalidArgument, JobServerError } from "./errors.js";
import type { JobQueue } from "./jobs/job-queue.js";
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from "./jobs/job-queue.js";
import { isPaid, isTerminal, jobOf, resultOf, statusOf } from "./jobs/job-row.js";
import type { JobWatch } from "./jobs/job-watch.js";
import { type CheckedSpec, checkJobSpec, isJobId, type SpecDefaults } from "./jobs/spec-check.js";
import { checkJobEscrow } from "./payments/escrow-check.js";
import type { Settlement } from "./payments/settlement.js";
import { checkProtocolVersion } from "./protocol-version.js";

/** What {@link createJobService} needs. */
export interface JobServiceDeps {
  readonly queue: JobQueue;
  readonly settlement: Settlement;
  /** The wallet, to check paid jobs' escrows; undefined when not configured (free jobs only). */
  readonly wallet: WalletPort | undefined;
  readonly watch: JobWatch;
  /** This job server's address: paid jobs' escrows must name it as arbiter. */
  readonly serverAddress: string;
  readonly specDefaults: SpecDefaults;
  readonly now: () => number;
  /** How often an update stream re-reads the log without a local wake-up. */
  readonly updatesPollMs: number;
  /** Aborts when the server shuts down: update streams end so clients resume elsewhere. */
  readonly shutdown: AbortSignal;
}

/** Longest CancelJob reason, in bytes. */
const MAX_REASON_BYTES = 1024;
/** Update records read per query while catching up. */
const UPDATE_BATCH = 100;
/** A stream ends this long before its deadline, cleanly, so the client resumes without an error. */
const DEADLINE_MARGIN_MS = 1000;

function checkJobIdField(jobId: string): void {
  if (!isJobId(jobId))
    throw invalidArgument("job_id", "must be 1-128 characters of [A-Za-z0-9._:-]");
}

/** Whether a stream should end now to beat its deadline. */
function nearDeadline(ctx: HandlerContext): boolean {
  const left = ctx.timeoutMs();
  return left !== undefined && left < DEADLINE_MARGIN_MS;
}

/** The full JobService. */
export function createJobService(deps: JobServiceDeps): ServiceImpl<typeof JobService> {
  const { queue, settlement, wallet, watch, serverAddress, specDefaults, now } = deps;

  async function* updates(
    jobId: string,
    afterSequence: bigint,
    ctx: HandlerContext,
  ): AsyncGenerator<StreamJobUpdatesResponse> {
    const caller = requireCaller(ctx);
    await queue.getOwned(jobId, caller);
    const signal = AbortSignal.any([ctx.signal, deps.shutdown]);
    let last = Number(afterSequence);
    if (last === 0) {
      const current = await queue.latestUpdate(jobId);
      if (current === undefined) return;
      yield create(StreamJobUpdatesResponseSchema, current);
      last = Number(current.sequence);
      if (isTerminal(current.status?.state ?? JobState.UNSPECIFIED)) return;
    }
    while (!signal.aborted && !nearDeadline(ctx)) {
      const batch = await queue.updatesAfter(jobId, last, UPDATE_BATCH);
      for (const update of batch) {
        yield update;
        last = Number(update.sequence);
        if (isTerminal(update.status?.state ?? JobState.UNSPECIFIED)) return;
      }
      if (batch.length === UPDATE_BATCH) continue;
      const left = ctx.timeoutMs();
      const wait =
        left === undefined
          ? deps.updatesPollMs
          : Math.max(0, Math.min(deps.updatesPollMs, left - DEADLINE_MARGIN_MS));
      await watch.waitForChange(jobId, wait, signal);
    }
  }

  return {
    submitJob: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "SubmitJob");
        const checked: CheckedSpec = checkJobSpec(req.spec, specDefaults, now());
        if (checked.paymentAmount > 0n) {
          // A replay answers the stored job, whatever became of its escrow since.
          const replay = await queue.findReplay(caller, checked);
          if (replay !== undefined) return { job: jobOf(replay), created: false };
          await checkJobEscrow(wallet, { caller, checked, selfAddress: serverAddress });
        }
        const { job, created } = await queue.submit(caller, checked);
        return { job: jobOf(job), created };
      }),

    getJobStatus: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "GetJobStatus");
        checkJobIdField(req.jobId);
        const row = await queue.getOwned(req.jobId, caller);
        const result = resultOf(row);
        return {
          status: statusOf(row),
          ...(result === undefined ? {} : { result }),
        };
      }),

    cancelJob: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "CancelJob");
        checkJobIdField(req.jobId);
        if (Buffer.byteLength(req.reason, "utf8") > MAX_REASON_BYTES) {
          throw invalidArgument("reason", `at most ${MAX_REASON_BYTES} bytes`);
        }
        let row = await queue.cancel(req.jobId, caller, req.reason);
        if (row.settlement === "refund") {
          await settlement.settle(row.job_id);
          row = (await queue.get(row.job_id)) ?? row;
        }
        return {
          status: statusOf(row),
          refundIssued: isPaid(row) && row.settlement_tx_id !== "",
          refundTransactionId: row.settlement_tx_id,
        };
      }),

    streamJobUpdates: (req, ctx) =>
      translateStream(() => {
        checkProtocolVersion(req.protocolVersion, "StreamJobUpdates");
        checkJobIdField(req.jobId);
        return updates(req.jobId, req.afterSequence, ctx);
      }),

    listJobs: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "ListJobs");
        const owner = req.ownerAddress === "" ? caller : req.ownerAddress;
        if (owner !== caller) {
          throw new JobServerError("permission_denied", "clients list only their own jobs");
        }
        const pageSize =
          req.pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(req.pageSize, MAX_PAGE_SIZE);
        const page = await queue.list({
          owner,
          jobType: req.jobType,
          state: req.state,
          pageSize,
          pageToken: req.pageToken,
        });
        return {
          jobs: page.jobs.map(jobOf),
          nextPageToken: page.nextPageToken,
          totalCount: BigInt(page.totalCount),
        };
      }),
  };
}
