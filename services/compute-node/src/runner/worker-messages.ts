/**
 * Messages between the node and a job's worker process (sent over the IPC channel of
 * `child_process.fork` with `serialization: "advanced"`, so bytes and bigints cross as they are).
 * The node sends one `start`, maybe a `cancel`; the worker answers with `progress` and `memory`
 * samples and ends with one `result`.
 */

/** One job's inputs as local files, and its spec as protobuf binary (tessera.job.v1.JobSpec). */
export interface WorkerJobInput {
  readonly specBinary: Uint8Array;
  readonly modelPath?: string | undefined;
  readonly modelMediaType?: string | undefined;
  readonly datasetPath?: string | undefined;
  readonly datasetMediaType?: string | undefined;
  readonly initialWeightsPath?: string | undefined;
}

/** A progress sample of the running job, as the executor emitted it. */
export interface WorkerProgress {
  /** Fraction done in [0, 1]. */
  readonly progress: number;
  readonly epoch?: number | undefined;
  readonly metrics?: Readonly<Record<string, number>> | undefined;
  readonly log?: { readonly level: string; readonly message: string } | undefined;
  readonly samplesProcessed?: number | undefined;
  readonly totalSamples?: number | undefined;
}

/** One output file of a finished job. */
export interface WorkerArtifact {
  readonly name: string;
  readonly path: string;
  readonly mediaType: string;
}

/** Why a job failed inside the worker. */
export type WorkerFailureKind =
  /** The job's own input is unusable (JobInputError). */
  | "invalid_input"
  /** The run stopped because it was cancelled. */
  | "cancelled"
  /** Anything else the executor threw. */
  | "error";

/** node -> worker */
export type ToWorker =
  | { readonly type: "start"; readonly input: WorkerJobInput; readonly workDir: string }
  | { readonly type: "cancel" };

/** worker -> node */
export type FromWorker =
  | { readonly type: "progress"; readonly event: WorkerProgress }
  | { readonly type: "memory"; readonly rssBytes: number }
  | {
      readonly type: "result";
      readonly ok: true;
      readonly artifacts: readonly WorkerArtifact[];
      readonly finalMetrics: Readonly<Record<string, number>>;
    }
  | {
      readonly type: "result";
      readonly ok: false;
      readonly kind: WorkerFailureKind;
      readonly message: string;
    };
