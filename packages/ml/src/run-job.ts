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
import { RUNTIME_BY_JOB_TYPE } from "./capabilities.js";
import { JobInputError } from "./errors.js";
import { runEvaluation } from "./evaluation.js";
import { runInference } from "./inference.js";
import type { JobRunContext, JobRunInput, JobRunOutput } from "./job-run.js";
import { runPreprocessing } from "./preprocessing.js";
import { runTraining } from "./training.js";

export {
  DATASET_MEDIA_TYPES,
  MODEL_FORMATS,
  MODEL_MEDIA_TYPES,
  RUNTIME_BY_JOB_TYPE,
  SUPPORTED_JOB_TYPES,
  SUPPORTED_RUNTIMES,
  type SupportedRuntime,
} from "./capabilities.js";

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
