/**
 * Tells the registry what nodes did with this job server's jobs, for their reputation: a
 * completed job (JOB_COMPLETED, with its compute time) and a lost or failed attempt
 * (JOB_ABANDONED: the lease lapsed, or the node reported a node error). Validation verdicts are
 * not reported here: the registry records VALIDATION_PASSED / VALIDATION_FAILED itself when it
 * judges a completion. Best effort: a failed report is logged and dropped.
 */
import { JobFailureReason, JobState } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { NodeEventKind } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import type { Logger } from "@tessera/runtime";
import type { NodeEvent, RegistryPort } from "@tessera/sdk/peer-clients";
import { storedResultOf } from "../jobs/job-row.js";
import type { QueueChanges } from "../jobs/queue-core.js";

/** What {@link createNodeEventReporter} needs. */
export interface NodeEventReporterOptions {
  readonly registry: RegistryPort;
  readonly logger: Logger;
  readonly now: () => number;
}

/** Reports node events derived from committed queue changes. */
export interface NodeEventReporter {
  /** Derives and sends the events of `changes` (in the background). */
  observe(changes: QueueChanges): void;
  /** Resolves once every report in flight has finished. */
  idle(): Promise<void>;
}

/** The events a batch of committed changes implies. */
export function nodeEventsOf(changes: QueueChanges, nowMs: number): NodeEvent[] {
  const events: NodeEvent[] = [];
  const jobs = new Map(changes.jobs.map((job) => [job.job_id, job]));
  for (const job of changes.jobs) {
    if (job.state !== JobState.COMPLETED) continue;
    const result = storedResultOf(job);
    if (result === undefined || result.nodeAddress === "") continue;
    events.push({
      eventId: `job-completed:${job.job_id}`,
      nodeAddress: result.nodeAddress,
      kind: NodeEventKind.JOB_COMPLETED,
      requestId: job.job_id,
      occurredAtMs: nowMs,
      computeTimeMs: Number(result.totalComputeTimeMs),
      detail: `batch job ${job.job_id} completed`,
    });
  }
  for (const lease of changes.endedLeases) {
    const job = jobs.get(lease.jobId);
    const nodeError =
      lease.state === "reported" &&
      job !== undefined &&
      job.state !== JobState.COMPLETED &&
      job.state !== JobState.VALIDATING &&
      (job.failure_reason === JobFailureReason.NODE_ERROR ||
        job.failure_reason === JobFailureReason.ATTEMPTS_EXHAUSTED);
    if (lease.state !== "lapsed" && !nodeError) continue;
    events.push({
      eventId: `job-abandoned:${lease.leaseId}`,
      nodeAddress: lease.nodeAddress,
      kind: NodeEventKind.JOB_ABANDONED,
      requestId: lease.jobId,
      occurredAtMs: nowMs,
      computeTimeMs: 0,
      detail: lease.reason,
    });
  }
  return events;
}

/** A reporter sending to `options.registry`. */
export function createNodeEventReporter(options: NodeEventReporterOptions): NodeEventReporter {
  const { registry, logger, now } = options;
  const inFlight = new Set<Promise<void>>();
  return {
    observe(changes) {
      for (const event of nodeEventsOf(changes, now())) {
        const sent = registry
          .reportNodeEvent(event)
          .catch((error: unknown) => {
            logger.warn(
              { node: event.nodeAddress, kind: NodeEventKind[event.kind], err: error },
              "node event not reported to the registry",
            );
          })
          .finally(() => inFlight.delete(sent));
        inFlight.add(sent);
      }
    },
    async idle() {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    },
  };
}
