/**
 * JobStatusService handlers: a node changes its leased job's state and hands in its result. A
 * completed result is checked (./leases/result-check.ts) before the job leaves its lease; a paid
 * job then goes to the validators and the wallet (./payments/settlement.ts) in the background.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { requireCaller } from "@tessera/auth";
import { JobState } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { JobStatusService } from "@tessera/proto/tessera/job/v1/job_status_service_pb.js";
import { requireSelf, translate } from "./connect-errors.js";
import { invalidArgument } from "./errors.js";
import { statusOf } from "./jobs/job-row.js";
import { isJobId } from "./jobs/spec-check.js";
import type { LeaseBook } from "./leases/lease-book.js";
import { type ArtifactLookup, checkCompletedResult } from "./leases/result-check.js";
import type { NodeBook } from "./nodes/node-book.js";
import type { Settlement } from "./payments/settlement.js";
import { checkProtocolVersion } from "./protocol-version.js";

/** What {@link createJobStatusService} needs. */
export interface JobStatusServiceDeps {
  readonly leases: LeaseBook;
  readonly nodes: NodeBook;
  readonly settlement: Settlement;
  /** The artifact store's lookup, to check a result's artifacts. */
  readonly getArtifact: ArtifactLookup;
}

function checkLeaseFields(jobId: string, leaseId: string): void {
  if (!isJobId(jobId))
    throw invalidArgument("job_id", "must be 1-128 characters of [A-Za-z0-9._:-]");
  if (leaseId === "") throw invalidArgument("lease_id", "is required");
}

/** The full JobStatusService. */
export function createJobStatusService(
  deps: JobStatusServiceDeps,
): ServiceImpl<typeof JobStatusService> {
  const { leases, nodes, settlement, getArtifact } = deps;
  return {
    updateJobStatus: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "UpdateJobStatus");
        requireSelf(caller, req.nodeAddress);
        checkLeaseFields(req.jobId, req.leaseId);
        const answer = await leases.updateStatus(caller, req.jobId, req.leaseId, {
          state: req.state,
          progress: req.progress,
          currentEpoch: req.currentEpoch,
          currentRound: 0,
          metrics: req.metrics,
          logs: req.logs,
          visualizationData: new Uint8Array(0),
          visualizationMediaType: "",
          failureReason: req.failureReason,
          errorMessage: req.errorMessage,
        });
        await nodes.touch(caller);
        if (answer.job.settlement === "refund") settlement.kick(answer.job.job_id);
        return {
          shouldContinue: answer.shouldContinue,
          ...(answer.leaseExpiresAtMs === undefined
            ? {}
            : { leaseExpiresAt: timestampFromMs(answer.leaseExpiresAtMs) }),
          status: statusOf(answer.job),
        };
      }),

    reportJobResult: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "ReportJobResult");
        requireSelf(caller, req.nodeAddress);
        checkLeaseFields(req.jobId, req.leaseId);
        const job = await leases.reportResult(
          caller,
          req.jobId,
          req.leaseId,
          req.result,
          (current, result) => checkCompletedResult(current, caller, result, getArtifact),
        );
        await nodes.touch(caller);
        if (job.state === JobState.VALIDATING || job.settlement === "refund") {
          settlement.kick(job.job_id);
        }
        return { status: statusOf(job) };
      }),
  };
}
