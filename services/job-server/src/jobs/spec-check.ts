/**
 * Checks a submitted JobSpec and derives what the queue keeps about it. Every refusal is
 * invalid_argument naming the field ("spec.dataset.digest: must be sha256:<64 lowercase hex>"),
 * except federation, which this job server does not run (unimplemented).
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { isAddress } from "@tessera/identity/address";
import { type ContentRef, DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { JobPriority, type JobSpec, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { invalidArgument, JobServerError } from "../errors.js";
import { PROTOCOL_VERSION } from "../protocol-version.js";

/** Server defaults a spec falls back on. */
export interface SpecDefaults {
  /** Attempts when the spec says 0. */
  readonly maxAttempts: number;
  /** Lifetime of a job whose spec has no expires_at, in ms. */
  readonly jobTtlMs: number;
  /** Per-attempt wall-clock limit when the spec says 0, in ms. */
  readonly maxDurationMs: number;
}

/** What the queue derives from a valid spec. */
export interface CheckedSpec {
  readonly spec: JobSpec;
  readonly jobId: string;
  readonly priority: JobPriority;
  readonly maxAttempts: number;
  readonly expiresAtMs: number;
  readonly maxDurationMs: number;
  /** 0n for a free job. */
  readonly paymentAmount: bigint;
  /** Digests of every input the spec names (model, dataset, weights, participants' data). */
  readonly inputDigests: readonly string[];
}

/** Most attempts a spec may ask for. */
export const MAX_ATTEMPTS_LIMIT = 10;

const JOB_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const HYPERPARAMETER_KEY = /^[a-z][a-z0-9_]{0,63}$/;
const RUNTIME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const AMOUNT = /^(0|[1-9][0-9]{0,77})$/;
const MAX_HYPERPARAMETERS = 64;
const MAX_HYPERPARAMETER_CHARS = 4096;
const MAX_TEXT_CHARS = 1024;

/** Whether `jobId` is a well-formed job id (1-128 characters of [A-Za-z0-9._:-]). */
export function isJobId(jobId: string): boolean {
  return JOB_ID.test(jobId);
}

/**
 * Checks `spec`, submitted at `nowMs`, and returns what the queue keeps.
 * @throws JobServerError invalid_argument naming the first bad field; unimplemented for federation.
 */
export function checkJobSpec(
  spec: JobSpec | undefined,
  defaults: SpecDefaults,
  nowMs: number,
): CheckedSpec {
  if (spec === undefined) throw invalidArgument("spec", "is required");
  if (spec.protocolVersion === undefined) {
    throw invalidArgument("spec.protocol_version", "is required");
  }
  if (spec.protocolVersion.major !== PROTOCOL_VERSION.major) {
    throw new JobServerError(
      "failed_precondition",
      `spec.protocol_version: ${spec.protocolVersion.major}.x is not compatible with this job server's ${PROTOCOL_VERSION.major}.x`,
    );
  }
  if (!JOB_ID.test(spec.jobId)) {
    throw invalidArgument("spec.job_id", "must be 1-128 characters of [A-Za-z0-9._:-]");
  }
  if (spec.jobType === JobType.UNSPECIFIED || JobType[spec.jobType] === undefined) {
    throw invalidArgument(
      "spec.job_type",
      "must be TRAINING, INFERENCE, EVALUATION or PREPROCESSING",
    );
  }
  if (JobPriority[spec.priority] === undefined) {
    throw invalidArgument("spec.priority", "is not a JobPriority");
  }
  const inputs: string[] = [];
  const needsModel = spec.jobType !== JobType.PREPROCESSING;
  if (spec.model === undefined) {
    if (needsModel) {
      throw invalidArgument("spec.model", `is required for ${JobType[spec.jobType]} jobs`);
    }
  } else {
    if (spec.model.content === undefined)
      throw invalidArgument("spec.model.content", "is required");
    inputs.push(checkContentRef(spec.model.content, "spec.model.content"));
    if (spec.model.modelId.length > 256) {
      throw invalidArgument("spec.model.model_id", "must be at most 256 characters");
    }
  }
  if (spec.initialWeights !== undefined) {
    inputs.push(checkContentRef(spec.initialWeights, "spec.initial_weights"));
  }
  if (spec.dataset === undefined) throw invalidArgument("spec.dataset", "is required");
  inputs.push(checkContentRef(spec.dataset, "spec.dataset"));

  const keys = Object.keys(spec.hyperparameters);
  if (keys.length > MAX_HYPERPARAMETERS) {
    throw invalidArgument("spec.hyperparameters", `at most ${MAX_HYPERPARAMETERS} entries`);
  }
  for (const key of keys) {
    if (!HYPERPARAMETER_KEY.test(key)) {
      throw invalidArgument(
        `spec.hyperparameters[${JSON.stringify(key.slice(0, 64))}]`,
        "keys are lower_snake_case, at most 64 characters",
      );
    }
    if ((spec.hyperparameters[key] ?? "").length > MAX_HYPERPARAMETER_CHARS) {
      throw invalidArgument(
        `spec.hyperparameters[${JSON.stringify(key)}]`,
        `values are at most ${MAX_HYPERPARAMETER_CHARS} characters`,
      );
    }
  }
  if (DeviceType[spec.requiredDevice] === undefined) {
    throw invalidArgument("spec.required_device", "is not a DeviceType");
  }
  if (spec.requiredRuntime !== "" && !RUNTIME.test(spec.requiredRuntime)) {
    throw invalidArgument(
      "spec.required_runtime",
      "must be a runtime name such as onnxruntime, tfjs or tessera-data",
    );
  }
  if (spec.maxAttempts > MAX_ATTEMPTS_LIMIT) {
    throw invalidArgument("spec.max_attempts", `must be at most ${MAX_ATTEMPTS_LIMIT}`);
  }
  if (!Number.isFinite(spec.minReputation) || spec.minReputation < 0 || spec.minReputation > 1) {
    throw invalidArgument("spec.min_reputation", "must be in [0, 1]");
  }

  let expiresAtMs = nowMs + defaults.jobTtlMs;
  if (spec.expiresAt !== undefined) {
    expiresAtMs = timestampMs(spec.expiresAt);
    if (!Number.isFinite(expiresAtMs) || expiresAtMs <= nowMs) {
      throw invalidArgument("spec.expires_at", "must be in the future");
    }
  }

  const paymentAmount = checkPayment(spec);
  if (spec.federation !== undefined) {
    if (spec.jobType !== JobType.TRAINING) {
      throw invalidArgument("spec.federation", "only TRAINING jobs can be federated");
    }
    throw new JobServerError(
      "unimplemented",
      "spec.federation: federated training is not offered by this job server yet",
    );
  }

  return {
    spec,
    jobId: spec.jobId,
    priority: spec.priority === JobPriority.UNSPECIFIED ? JobPriority.NORMAL : spec.priority,
    maxAttempts: spec.maxAttempts === 0 ? defaults.maxAttempts : spec.maxAttempts,
    expiresAtMs,
    maxDurationMs: spec.maxDurationMs === 0n ? defaults.maxDurationMs : safeMs(spec.maxDurationMs),
    paymentAmount,
    inputDigests: [...new Set(inputs)],
  };
}

function checkPayment(spec: JobSpec): bigint {
  if (spec.paymentAmount === "") return 0n;
  if (!AMOUNT.test(spec.paymentAmount)) {
    throw invalidArgument(
      "spec.payment_amount",
      'must be a decimal string of integer base units, e.g. "1500000"',
    );
  }
  const amount = BigInt(spec.paymentAmount);
  if (amount === 0n) return 0n;
  if (!isAddress(spec.payerAddress)) {
    throw invalidArgument("spec.payer_address", "must be the address that funded the escrow");
  }
  if (!JOB_ID.test(spec.escrowId)) {
    throw invalidArgument(
      "spec.escrow_id",
      "is required with a payment_amount: the wallet's escrow id (1-128 characters of [A-Za-z0-9._:-])",
    );
  }
  if (spec.estimatedDurationMs === 0n) {
    throw invalidArgument(
      "spec.estimated_duration_ms",
      "is required with a payment_amount: validators price the job by it",
    );
  }
  if (spec.model === undefined || spec.model.modelId === "") {
    throw invalidArgument(
      "spec.model.model_id",
      "is required with a payment_amount: validators route paid work by model",
    );
  }
  return amount;
}

function checkContentRef(ref: ContentRef, field: string): string {
  if (!DIGEST.test(ref.digest)) {
    throw invalidArgument(`${field}.digest`, "must be sha256:<64 lowercase hex>");
  }
  const uri = ref.uri;
  if (uri !== "") {
    if (uri.length > MAX_TEXT_CHARS) throw invalidArgument(`${field}.uri`, "is too long");
    const ok =
      /^artifact:\/\/[A-Za-z0-9._:-]{1,128}$/.test(uri) ||
      /^file:\/\/\/\S+$/.test(uri) ||
      /^https?:\/\/\S+$/.test(uri);
    if (!ok) {
      throw invalidArgument(
        `${field}.uri`,
        "must be artifact://<id>, file:///<absolute path> or an http(s) URL",
      );
    }
  }
  if (ref.mediaType.length > 256) throw invalidArgument(`${field}.media_type`, "is too long");
  return ref.digest;
}

function safeMs(value: bigint): number {
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
}
