/**
 * The price of a piece of work: the routed node's hourly price times the compute time, rounded up
 * to a whole base unit. Batch jobs bill their `estimated_compute_ms`; inference tasks bill the
 * policy's per-task compute time. Work on a free subnet costs 0.
 */
import {
  type WorkDescription,
  WorkKind,
} from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import { ValidationError } from "./errors.js";
import { parseAmount } from "./payment-tree.js";
import type { ValidationPolicy } from "./policy.js";

const MS_PER_HOUR = 3_600_000n;

/**
 * The price of `work` on a node asking `pricePerHour` base units per hour.
 * @throws ValidationError: failed_precondition when the node's price is not a valid amount,
 * invalid_argument when a batch job has no estimated compute time.
 */
export function priceWork(
  work: WorkDescription,
  pricePerHour: string,
  free: boolean,
  policy: ValidationPolicy,
): bigint {
  if (free) return 0n;
  const hourly = parseAmount(pricePerHour);
  if (hourly === undefined) {
    throw new ValidationError(
      "failed_precondition",
      "the node's price_per_hour is not a decimal amount",
    );
  }
  let computeMs: bigint;
  if (work.kind === WorkKind.BATCH_JOB) {
    if (work.estimatedComputeMs === 0n) {
      throw new ValidationError(
        "invalid_argument",
        "a batch job needs estimated_compute_ms to be priced",
      );
    }
    computeMs = work.estimatedComputeMs;
  } else {
    computeMs = BigInt(policy.inferenceTaskComputeMs);
  }
  return (hourly * computeMs + MS_PER_HOUR - 1n) / MS_PER_HOUR;
}

/**
 * The client's price cap of `work`, or undefined for no limit.
 * @throws ValidationError(invalid_argument) when `max_price` is not a decimal amount.
 */
export function maxPriceOf(work: WorkDescription): bigint | undefined {
  if (work.maxPrice === "") return undefined;
  const max = parseAmount(work.maxPrice);
  if (max === undefined) {
    throw new ValidationError("invalid_argument", "max_price is not a decimal amount");
  }
  return max;
}
