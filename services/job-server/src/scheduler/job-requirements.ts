/**
 * What a job needs from a node, derived once from its JobSpec, and the price rule that decides
 * whether a node is affordable.
 *
 * Price rule (the validators price a batch job the same way): a node asking `p` base units per
 * hour costs ceil(p * d / 3,600,000) for a job of `d` milliseconds, and is affordable when that is
 * at most the job's `payment_amount`. Equivalently p <= floor(payment * 3,600,000 / d), the job's
 * {@link JobRequirements.maxPricePerHour}. `d` is `estimated_duration_ms`, else `max_duration_ms`,
 * else the scheduler's default (1 hour). An empty `payment_amount` pays nothing: only nodes that
 * ask 0 qualify.
 */
import type { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { JobPriority, type JobSpec, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { SchedulerInputError } from "./errors.js";
import { parseBaseUnits } from "./scheduler-node.js";

/** Milliseconds in an hour: prices are per hour, durations in milliseconds. */
export const MS_PER_HOUR = 3_600_000;

/** Duration a job is priced for when it states neither an estimate nor a limit: 1 hour. */
export const DEFAULT_PRICED_DURATION_MS = MS_PER_HOUR;

/** Runtime of ONNX models (inference, evaluation). */
export const RUNTIME_ONNX = "onnxruntime";
/** Runtime of declarative sequential models (training). */
export const RUNTIME_TFJS = "tfjs";
/** Runtime of dataset transforms (preprocessing). */
export const RUNTIME_DATA = "tessera-data";

const MEDIA_ONNX = "application/onnx";
const MEDIA_SEQUENTIAL = "application/vnd.tessera.sequential+json";

/** What a job needs from a node. */
export interface JobRequirements {
  /** Device the job runs on; UNSPECIFIED and CPU run on the host (RAM), others on one such device. */
  readonly device: DeviceType;
  /** Memory reserved for the job on the node (RAM or device memory), in bytes; 0 needs none. */
  readonly memoryBytes: bigint;
  /** Runtime the node must offer; "" accepts any runtime. */
  readonly runtime: string;
  /** Highest hourly price (base units) the job can afford; undefined means no limit. */
  readonly maxPricePerHour: bigint | undefined;
  /** What the client pays for the job (base units); for messages and the cost estimate. */
  readonly paymentAmount: bigint | undefined;
  /** Duration the job is priced for, in milliseconds (> 0). */
  readonly durationMs: number;
  /** Lowest node reputation accepted, in [0, 1]. */
  readonly minReputation: number;
  /** Only nodes clients can call directly qualify. */
  readonly directAccess: boolean;
}

/** A queued job as the scheduler sees it. */
export interface SchedulerJob {
  /** The job's id; a node holds at most one reservation per job id. */
  readonly jobId: string;
  /** What it needs. */
  readonly requirements: JobRequirements;
  /** Its priority; UNSPECIFIED counts as NORMAL. Higher goes first in {@link Scheduler.placeForNode}. */
  readonly priority: JobPriority;
  /** When it was queued, in ms since the epoch; older goes first among equal priority. */
  readonly queuedAtMs: number;
}

/** Options of {@link jobRequirementsFrom}. */
export interface JobRequirementsOptions {
  /** Duration a job is priced for when it states none; default {@link DEFAULT_PRICED_DURATION_MS}. */
  readonly defaultDurationMs?: number;
}

/**
 * The runtime a job needs: `required_runtime` when set; otherwise PREPROCESSING needs
 * "tessera-data"; an ONNX model ("application/onnx", source "onnx" or a ".onnx" path) needs
 * "onnxruntime"; a sequential model ("application/vnd.tessera.sequential+json") needs "tfjs";
 * failing those TRAINING needs "tfjs" and INFERENCE/EVALUATION "onnxruntime"; else "" (any).
 */
export function runtimeFor(spec: JobSpec): string {
  if (spec.requiredRuntime !== "") return spec.requiredRuntime;
  if (spec.jobType === JobType.PREPROCESSING) return RUNTIME_DATA;
  const model = spec.model;
  const mediaType = model?.content?.mediaType ?? "";
  if (
    mediaType === MEDIA_ONNX ||
    model?.source === "onnx" ||
    (model?.path ?? "").toLowerCase().endsWith(".onnx")
  ) {
    return RUNTIME_ONNX;
  }
  if (mediaType === MEDIA_SEQUENTIAL) return RUNTIME_TFJS;
  switch (spec.jobType) {
    case JobType.TRAINING:
      return RUNTIME_TFJS;
    case JobType.INFERENCE:
    case JobType.EVALUATION:
      return RUNTIME_ONNX;
    default:
      return "";
  }
}

/**
 * The memory a job reserves: `estimated_memory_bytes` (what it expects to use), capped at
 * `max_memory_bytes` when that hard limit is lower; `max_memory_bytes` when there is no estimate;
 * 0 when neither is set.
 */
export function memoryFor(spec: JobSpec): bigint {
  const estimate = spec.estimatedMemoryBytes;
  const limit = spec.maxMemoryBytes;
  if (estimate > 0n) return limit > 0n && limit < estimate ? limit : estimate;
  return limit;
}

/** The highest hourly price a payment of `payment` covers for `durationMs` (see the price rule). */
export function maxPricePerHourFor(payment: bigint, durationMs: number): bigint {
  return (payment * BigInt(MS_PER_HOUR)) / BigInt(durationMs);
}

/** What `durationMs` of compute costs on a node asking `pricePerHour`, rounded up to a base unit. */
export function costFor(pricePerHour: bigint, durationMs: number): bigint {
  const hour = BigInt(MS_PER_HOUR);
  return (pricePerHour * BigInt(durationMs) + hour - 1n) / hour;
}

/**
 * The requirements of `spec` (see {@link runtimeFor}, {@link memoryFor} and the price rule).
 * @throws SchedulerInputError("payment_amount") when the payment is not a decimal amount,
 * ("min_reputation") when it is not in [0, 1].
 */
export function jobRequirementsFrom(
  spec: JobSpec,
  options: JobRequirementsOptions = {},
): JobRequirements {
  const payment = parseBaseUnits(spec.paymentAmount, "payment_amount");
  if (!(spec.minReputation >= 0 && spec.minReputation <= 1)) {
    throw new SchedulerInputError("min_reputation", `${spec.minReputation} is not in [0, 1]`);
  }
  const durationMs = pricedDurationMs(
    spec,
    options.defaultDurationMs ?? DEFAULT_PRICED_DURATION_MS,
  );
  return {
    device: spec.requiredDevice,
    memoryBytes: memoryFor(spec),
    runtime: runtimeFor(spec),
    maxPricePerHour: maxPricePerHourFor(payment, durationMs),
    paymentAmount: payment,
    durationMs,
    minReputation: spec.minReputation,
    directAccess: spec.requestDirectAccess,
  };
}

/**
 * The scheduler's view of a queued job: its requirements, priority (UNSPECIFIED becomes NORMAL)
 * and queue time.
 * @throws SchedulerInputError as {@link jobRequirementsFrom}.
 */
export function schedulerJobFrom(
  spec: JobSpec,
  queuedAt: Date,
  options: JobRequirementsOptions = {},
): SchedulerJob {
  return {
    jobId: spec.jobId,
    requirements: jobRequirementsFrom(spec, options),
    priority: spec.priority === JobPriority.UNSPECIFIED ? JobPriority.NORMAL : spec.priority,
    queuedAtMs: queuedAt.getTime(),
  };
}

function pricedDurationMs(spec: JobSpec, fallbackMs: number): number {
  const stated = spec.estimatedDurationMs > 0n ? spec.estimatedDurationMs : spec.maxDurationMs;
  if (stated > 0n) return Number(stated);
  if (!(Number.isInteger(fallbackMs) && fallbackMs > 0)) {
    throw new SchedulerInputError("defaultDurationMs", `${fallbackMs} is not a positive integer`);
  }
  return fallbackMs;
}
