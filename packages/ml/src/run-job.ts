/**
 * The single entry point of the executors: {@link runJob} dispatches a job by its type, and the
 * constants say what this package can run, for a node's NodeRecord.runtimes and the scheduler.
 *
 * | job type      | runtime        | reads                                             | writes                       |
 * |---------------|----------------|---------------------------------------------------|------------------------------|
 * | TRAINING      | "tfjs"         | sequential document + labelled dataset            | model, weights, metrics      |
 * | INFERENCE     | "onnxruntime"  | ONNX model (or document + weights) + dataset      | predictions, metrics         |
 * | EVALUATION    | "onnxruntime"  | ONNX model (or document + weights) + labelled set | metrics                      |
 * | PREPROCESSING | "tessera-data" | dataset + hyperparameters.transforms              | data, test (split), metrics  |
 */
import { JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { JobInputError } from "./errors.js";
import { runEvaluation } from "./evaluation.js";
import { runInference } from "./inference.js";
import type { JobRunContext, JobRunInput, JobRunOutput } from "./job-run.js";
import {
  CSV_MEDIA_TYPE,
  NDJSON_MEDIA_TYPE,
  ONNX_MEDIA_TYPE,
  SEQUENTIAL_MEDIA_TYPE,
} from "./media-types.js";
import { runPreprocessing } from "./preprocessing.js";
import { runTraining } from "./training.js";

/** Runtimes this package provides, as a node advertises them in NodeRecord.runtimes. */
export const SUPPORTED_RUNTIMES = ["onnxruntime", "tfjs", "tessera-data"] as const;

/** A runtime this package provides. */
export type SupportedRuntime = (typeof SUPPORTED_RUNTIMES)[number];

/** The runtime each supported job type runs on. */
export const RUNTIME_BY_JOB_TYPE: ReadonlyMap<JobType, SupportedRuntime> = new Map([
  [JobType.TRAINING, "tfjs"],
  [JobType.INFERENCE, "onnxruntime"],
  [JobType.EVALUATION, "onnxruntime"],
  [JobType.PREPROCESSING, "tessera-data"],
]);

/** Job types {@link runJob} runs. */
export const SUPPORTED_JOB_TYPES: readonly JobType[] = [...RUNTIME_BY_JOB_TYPE.keys()];

/** Model media types the executors read (ONNX for inference/evaluation, documents for all). */
export const MODEL_MEDIA_TYPES = [ONNX_MEDIA_TYPE, SEQUENTIAL_MEDIA_TYPE] as const;

/** Model formats the executors read: ONNX graphs and "tessera.sequential/v1" documents. */
export const MODEL_FORMATS = ["onnx", "tessera.sequential/v1"] as const;

/** Dataset media types the executors read. */
export const DATASET_MEDIA_TYPES = [CSV_MEDIA_TYPE, NDJSON_MEDIA_TYPE] as const;

/**
 * Runs the job `input.spec` describes on the local files of `input`, writing its artifacts into
 * `ctx.workDir`.
 * @throws JobInputError for an unsupported job type or runtime, and for bad input (see each
 *   executor); the abort signal's reason when `ctx.signal` aborts.
 */
export async function runJob(input: JobRunInput, ctx: JobRunContext): Promise<JobRunOutput> {
  ctx.signal.throwIfAborted();
  const runtime = RUNTIME_BY_JOB_TYPE.get(input.spec.jobType);
  if (runtime === undefined) {
    throw new JobInputError(
      `spec.job_type ${JobType[input.spec.jobType] ?? input.spec.jobType} is not supported`,
    );
  }
  const required = input.spec.requiredRuntime;
  if (required !== "" && required !== runtime) {
    throw new JobInputError(
      `spec.required_runtime ${JSON.stringify(required)} cannot run a ${JobType[input.spec.jobType]} job here (it runs on ${runtime})`,
    );
  }
  switch (input.spec.jobType) {
    case JobType.TRAINING:
      return runTraining(input, ctx);
    case JobType.INFERENCE:
      return runInference(input, ctx);
    case JobType.EVALUATION:
      return runEvaluation(input, ctx);
    default:
      return runPreprocessing(input, ctx);
  }
}
