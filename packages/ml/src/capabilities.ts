/**
 * What the executors can run, without loading them: a node advertises these in its NodeRecord
 * (runtimes, supported formats) and the scheduler matches jobs against them. Kept apart from
 * run-job so that reading them does not load tfjs and onnxruntime into the caller's process.
 */
import { JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  CSV_MEDIA_TYPE,
  NDJSON_MEDIA_TYPE,
  ONNX_MEDIA_TYPE,
  SEQUENTIAL_MEDIA_TYPE,
} from "./media-types.js";

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
