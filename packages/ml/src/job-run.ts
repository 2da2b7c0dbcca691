/**
 * The shapes every executor shares: what a job gets (spec and local input files), the context it
 * runs in (work directory, abort signal, progress sink) and what it hands back (artifact files
 * and final metrics). The compute node resolves the spec's ContentRefs to local files (see
 * content-cache.ts) before calling an executor, and uploads the artifacts afterwards.
 */
import type { JobSpec } from "@tessera/proto/tessera/job/v1/job_pb.js";

/** A job's spec and its inputs as local files. */
export interface JobRunInput {
  /** The job as the client submitted it (hyperparameters, epochs, batch size, ...). */
  readonly spec: JobSpec;
  /** The model file (spec.model.content), when the job has one. */
  readonly modelPath?: string | undefined;
  /** Its media type (application/onnx or application/vnd.tessera.sequential+json); default from the file name. */
  readonly modelMediaType?: string | undefined;
  /** The dataset file (spec.dataset or the assignment's dataset). */
  readonly datasetPath?: string | undefined;
  /** Its media type (text/csv or application/x-ndjson); default from the file name. */
  readonly datasetMediaType?: string | undefined;
  /** Weights to start from or to use (spec.initial_weights or the round's global weights). */
  readonly initialWeightsPath?: string | undefined;
}

/** A progress report; the node forwards it as ReportProgress. */
export interface ProgressEvent {
  /** Fraction done in [0, 1]. */
  readonly progress: number;
  /** Epoch in progress or just finished, 1-based (training). */
  readonly epoch?: number;
  /** Metrics so far, keys "<phase>/<name>". */
  readonly metrics?: Readonly<Record<string, number>>;
  /** A log line for the job's log; never contains data values. */
  readonly log?: {
    readonly level: "debug" | "info" | "warning" | "error";
    readonly message: string;
  };
  /** Samples processed so far (over all epochs when training). */
  readonly samplesProcessed?: number;
  /** Samples the whole job processes. */
  readonly totalSamples?: number;
}

/** Where and how a job runs. */
export interface JobRunContext {
  /** Directory the executor writes its artifacts into (created when missing). */
  readonly workDir: string;
  /** Aborts the job (cancellation, lease loss); executors stop between batches and reject with its reason. */
  readonly signal: AbortSignal;
  /** Receives progress; must not throw. */
  readonly onProgress?: ((event: ProgressEvent) => void) | undefined;
}

/** One output file of a job. */
export interface JobArtifact {
  /** Role name ("model", "weights", "predictions", "metrics", "data", "test"). */
  readonly name: string;
  /** Absolute path of the file in the work directory. */
  readonly path: string;
  /** Its media type. */
  readonly mediaType: string;
}

/** What a finished job hands back. */
export interface JobRunOutput {
  /** Output files, to upload as the result's artifacts. */
  readonly artifacts: readonly JobArtifact[];
  /** Final metrics ("<phase>/<name>" → value), for JobResult.final_metrics. */
  readonly finalMetrics: Readonly<Record<string, number>>;
}

/** Sends `event` to the context's progress sink, if any. */
export function report(ctx: JobRunContext, event: ProgressEvent): void {
  ctx.onProgress?.(event);
}

/** Yields to the event loop (so an abort can land) and throws the signal's reason when aborted. */
export async function checkpoint(signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  signal.throwIfAborted();
}
