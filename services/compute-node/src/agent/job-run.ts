/**
 * One lease, from acceptance to the closed lease: accept it, mark the job RUNNING, fetch its
 * inputs, run it in its own process under its limits while forwarding progress, then hand in
 * the result (uploaded artifacts and the node's signed completion) or the failure, and close the
 * lease. A cancellation stops the run at any point before the result is handed in.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { KeyPair } from "@tessera/identity/keys";
import { resultHash } from "@tessera/identity/result-manifest";
import { signComputeCompletion } from "@tessera/identity/validation-bundle";
import {
  type ComputeCompletion,
  ComputeCompletionSchema,
  type ContentRef,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type Assignment,
  JobFailureReason,
  type JobResultSchema,
  JobState,
  type ResultArtifact,
  ResultArtifactSchema,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { JobStatusService } from "@tessera/proto/tessera/job/v1/job_status_service_pb.js";
import { LeaseOutcome, type NodeService } from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import type { Logger } from "@tessera/runtime";
import { NODE_PROTOCOL_VERSION } from "../protocol-version.js";
import type {
  JobProcessFailure,
  JobProcessOptions,
  JobProcessOutcome,
  LocalJobInput,
} from "../runner/job-process.js";
import type { WorkerArtifact } from "../runner/worker-messages.js";
import type { JobLimits } from "./capacity.js";
import { ProgressReporter } from "./progress-reporter.js";
import { withRetries } from "./retry.js";

/** What a run needs from the node. */
export interface JobRunDeps {
  readonly keyPair: KeyPair;
  readonly node: Client<typeof NodeService>;
  readonly status: Client<typeof JobStatusService>;
  /** Fetches the job's model, dataset and initial weights into the content cache. */
  readonly resolveInputs: (assignment: Assignment, signal: AbortSignal) => Promise<LocalJobInput>;
  /** Whether an input error is the job's own fault (INVALID_INPUT) rather than the node's. */
  readonly isInputError: (error: unknown) => boolean;
  /** Runs the job in its own process. */
  readonly runProcess: (options: JobProcessOptions) => Promise<JobProcessOutcome>;
  /** Uploads one output file as an artifact of the lease; resolves with its content reference. */
  readonly uploadArtifact: (
    artifact: WorkerArtifact,
    lease: { readonly jobId: string; readonly leaseId: string },
    signal: AbortSignal,
  ) => Promise<ContentRef>;
  /** Parent directory of the jobs' work directories. */
  readonly workRoot: string;
  readonly logger: Logger;
  /** Least time between two progress reports; default 1,000 ms. */
  readonly progressIntervalMs?: number | undefined;
}

/** Who stopped a run. */
export type StopKind =
  /** The job server cancelled the job or revoked the lease. */
  | "cancelled"
  /** The node gives the job back (shutting down). */
  | "released";

/** Where a run is. */
export type JobRunPhase = "accepting" | "preparing" | "running" | "reporting" | "done";

const failureReasons: Readonly<Record<JobProcessFailure, JobFailureReason>> = {
  invalid_input: JobFailureReason.INVALID_INPUT,
  time_limit_exceeded: JobFailureReason.TIME_LIMIT_EXCEEDED,
  memory_limit_exceeded: JobFailureReason.MEMORY_LIMIT_EXCEEDED,
  node_error: JobFailureReason.NODE_ERROR,
};

/** A directory name for a lease id: safe characters only, bounded length. */
function directoryName(leaseId: string): string {
  return leaseId.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 100) || "lease";
}

/** Error text for the job's owner: a Connect error's own message, or the error's. */
function describe(error: unknown): string {
  if (error instanceof ConnectError) return error.rawMessage;
  return error instanceof Error ? error.message : String(error);
}

/** One leased job on this node. */
export class JobRun {
  readonly assignment: Assignment;
  readonly limits: JobLimits;
  readonly #deps: JobRunDeps;
  readonly #log: Logger;
  /** Stops the job's work (input fetch, process). */
  readonly #work = new AbortController();
  /** Stops everything, reports included (the node's hard stop). */
  readonly #hard = new AbortController();
  #stop: { kind: StopKind; reason: string } | undefined;
  #phase: JobRunPhase = "accepting";

  constructor(assignment: Assignment, limits: JobLimits, deps: JobRunDeps) {
    this.assignment = assignment;
    this.limits = limits;
    this.#deps = deps;
    this.#log = deps.logger.child({
      jobId: assignment.jobId,
      leaseId: assignment.leaseId,
      attempt: assignment.attempt,
    });
  }

  get jobId(): string {
    return this.assignment.jobId;
  }

  get leaseId(): string {
    return this.assignment.leaseId;
  }

  get phase(): JobRunPhase {
    return this.#phase;
  }

  /**
   * Stops the run: before its result is handed in, the work stops and the lease is closed as
   * CANCELLED or RELEASED. Once the result is being handed in, only {@link abort} stops it.
   */
  stop(kind: StopKind, reason: string): void {
    if (this.#stop !== undefined || this.#phase === "reporting" || this.#phase === "done") return;
    this.#stop = { kind, reason };
    this.#log.info({ kind, reason }, "stopping job");
    this.#work.abort(new Error(reason));
  }

  /** Stops everything at once, reports included (the node's shutdown grace ran out). */
  abort(): void {
    this.stop("released", "the node is shutting down");
    this.#hard.abort(new Error("the node stopped"));
  }

  /** Runs the lease to its end; never rejects. */
  async run(): Promise<void> {
    const started = performance.now();
    const elapsedMs = () => Math.round(performance.now() - started);
    const workDir = join(this.#deps.workRoot, directoryName(this.leaseId));
    try {
      if (!(await this.#accept())) return;
      this.#phase = "preparing";
      if (!(await this.#markRunning())) return await this.#closeLease(elapsedMs());
      await mkdir(workDir, { recursive: true });

      let input: LocalJobInput;
      try {
        input = await this.#deps.resolveInputs(this.assignment, this.#work.signal);
      } catch (error) {
        if (this.#stop !== undefined) return await this.#closeLease(elapsedMs());
        const invalid = this.#deps.isInputError(error);
        this.#log.warn({ err: error }, "cannot fetch the job's inputs");
        await this.#reportFailure(
          invalid ? JobFailureReason.INVALID_INPUT : JobFailureReason.NODE_ERROR,
          `cannot fetch the job's inputs: ${describe(error)}`,
          elapsedMs(),
        );
        return await this.#closeLease(elapsedMs());
      }

      this.#phase = "running";
      const outcome = await this.#execute(input, workDir);
      if (outcome.kind === "cancelled" || this.#stop !== undefined) {
        return await this.#closeLease(elapsedMs());
      }
      this.#phase = "reporting";
      if (outcome.kind === "failed") {
        this.#log.info({ reason: outcome.reason, message: outcome.message }, "job failed");
        await this.#reportFailure(
          failureReasons[outcome.reason],
          outcome.message,
          outcome.elapsedMs,
        );
      } else {
        await this.#reportSuccess(outcome);
      }
      await this.#closeLease(elapsedMs());
    } catch (error) {
      this.#log.error({ err: error }, "job run failed");
    } finally {
      this.#phase = "done";
      await rm(workDir, { recursive: true, force: true }).catch((error: unknown) =>
        this.#log.warn({ err: error }, "cannot remove the job's work directory"),
      );
    }
  }

  #base() {
    return {
      protocolVersion: NODE_PROTOCOL_VERSION,
      nodeAddress: this.#deps.keyPair.address,
      jobId: this.jobId,
      leaseId: this.leaseId,
    };
  }

  async #accept(): Promise<boolean> {
    try {
      await withRetries(
        () =>
          this.#deps.node.notifyJobAccepted(
            { ...this.#base(), accepted: true },
            { signal: this.#hard.signal },
          ),
        { signal: this.#hard.signal },
      );
      this.#log.info(
        { jobType: this.assignment.spec?.jobType, limits: this.limits },
        "job accepted",
      );
      return true;
    } catch (error) {
      this.#log.warn({ err: error }, "cannot accept the assignment; dropping it");
      return false;
    }
  }

  /** Marks the job RUNNING; false when the server says to stop (the run is then stopped). */
  async #markRunning(): Promise<boolean> {
    if (this.#stop !== undefined) return false;
    try {
      const answer = await withRetries(
        () =>
          this.#deps.status.updateJobStatus(
            { ...this.#base(), state: JobState.RUNNING },
            { signal: this.#hard.signal },
          ),
        { signal: this.#hard.signal },
      );
      if (!answer.shouldContinue) this.stop("cancelled", "the job server asked to stop the job");
    } catch (error) {
      if (!isLeaseGone(error)) throw error;
      this.stop("cancelled", `the lease is gone: ${describe(error)}`);
    }
    return this.#stop === undefined;
  }

  async #execute(input: LocalJobInput, workDir: string): Promise<JobProcessOutcome> {
    const reporter = new ProgressReporter({
      minIntervalMs: this.#deps.progressIntervalMs,
      send: async (report) =>
        (
          await this.#deps.node.reportProgress(
            { ...this.#base(), ...report },
            { signal: this.#hard.signal },
          )
        ).shouldContinue,
      onStop: (reason) => this.stop("cancelled", reason),
      isFatal: isLeaseGone,
      onError: (error) => this.#log.debug({ err: error }, "progress report failed"),
    });
    try {
      const outcome = await this.#deps.runProcess({
        input,
        workDir,
        maxDurationMs: this.limits.maxDurationMs,
        maxMemoryBytes: this.limits.maxMemoryBytes,
        signal: this.#work.signal,
        onProgress: (event) => reporter.push(event),
      });
      if (outcome.kind !== "cancelled") await reporter.flush();
      return outcome;
    } finally {
      reporter.close();
    }
  }

  async #reportSuccess(outcome: Extract<JobProcessOutcome, { kind: "completed" }>): Promise<void> {
    const lease = { jobId: this.jobId, leaseId: this.leaseId };
    const artifacts: ResultArtifact[] = [];
    try {
      for (const file of outcome.artifacts) {
        const content = await withRetries(
          () => this.#deps.uploadArtifact(file, lease, this.#hard.signal),
          { signal: this.#hard.signal },
        );
        artifacts.push(create(ResultArtifactSchema, { name: file.name, content }));
      }
    } catch (error) {
      this.#log.warn({ err: error }, "cannot upload the job's results");
      return this.#reportFailure(
        JobFailureReason.NODE_ERROR,
        `the node could not upload the results: ${describe(error)}`,
        outcome.elapsedMs,
      );
    }
    const computeCompletion = this.#completion(artifacts, outcome.elapsedMs);
    await this.#reportResult({
      state: JobState.COMPLETED,
      artifacts,
      finalMetrics: { ...outcome.finalMetrics },
      totalComputeTimeMs: BigInt(outcome.elapsedMs),
      computeCompletion,
    });
    this.#log.info(
      { artifacts: artifacts.map((a) => a.name), computeMs: outcome.elapsedMs },
      "job completed",
    );
  }

  /** The node's signed attestation of the artifacts (result_hash over their manifest). */
  #completion(artifacts: readonly ResultArtifact[], computeMs: number): ComputeCompletion {
    const hash = resultHash(
      artifacts.map((artifact) => ({
        name: artifact.name,
        digest: artifact.content?.digest ?? "",
      })),
    );
    return signComputeCompletion(
      create(ComputeCompletionSchema, {
        protocolVersion: NODE_PROTOCOL_VERSION,
        requestId: this.jobId,
        computeNodeAddress: this.#deps.keyPair.address,
        resultHash: hash,
        completedAt: timestampNow(),
        computationTimeMs: BigInt(computeMs),
      }),
      this.#deps.keyPair,
    );
  }

  #reportFailure(reason: JobFailureReason, message: string, computeMs: number): Promise<void> {
    return this.#reportResult({
      state: JobState.FAILED,
      failureReason: reason,
      errorMessage: message,
      totalComputeTimeMs: BigInt(computeMs),
    });
  }

  async #reportResult(
    result: Omit<
      MessageInitShape<typeof JobResultSchema>,
      "$typeName" | "protocolVersion" | "jobId" | "attempt" | "nodeAddress"
    >,
  ): Promise<void> {
    try {
      const answer = await withRetries(
        () =>
          this.#deps.status.reportJobResult(
            {
              ...this.#base(),
              result: {
                ...result,
                protocolVersion: NODE_PROTOCOL_VERSION,
                jobId: this.jobId,
                attempt: this.assignment.attempt,
                nodeAddress: this.#deps.keyPair.address,
              },
            },
            { signal: this.#hard.signal },
          ),
        { attempts: 8, signal: this.#hard.signal },
      );
      this.#log.debug({ state: answer.status?.state }, "result reported");
    } catch (error) {
      this.#log.warn({ err: error }, "cannot report the job's result");
    }
  }

  /** Closes the lease: RESULT_REPORTED, or CANCELLED / RELEASED when the run was stopped. */
  async #closeLease(computeMs: number): Promise<void> {
    const stop = this.#stop;
    const outcome =
      stop === undefined
        ? LeaseOutcome.RESULT_REPORTED
        : stop.kind === "cancelled"
          ? LeaseOutcome.CANCELLED
          : LeaseOutcome.RELEASED;
    try {
      await withRetries(
        () =>
          this.#deps.node.reportCompletion(
            {
              ...this.#base(),
              outcome,
              computeTimeMs: BigInt(computeMs),
              reason: stop?.reason ?? "",
            },
            { signal: this.#hard.signal },
          ),
        { signal: this.#hard.signal },
      );
      this.#log.info({ outcome: LeaseOutcome[outcome] }, "lease closed");
    } catch (error) {
      this.#log.warn({ err: error, outcome: LeaseOutcome[outcome] }, "cannot close the lease");
    }
  }
}

/** Whether the server refuses because the lease is no longer the node's (stale, reassigned). */
export function isLeaseGone(error: unknown): boolean {
  const { code } = ConnectError.from(error);
  return code === Code.FailedPrecondition || code === Code.NotFound;
}
