/**
 * The rules the registry and every validator must share to agree on terms: who the treasury is,
 * how a payment splits when the subnet says nothing, how an inference task is priced, how long an
 * approval lives. A validator configured differently from the registry refuses to sign (and says
 * which check differs), so keep these equal across a network.
 */
import { isAddress } from "@tessera/identity/address";
import {
  DEFAULT_PAYMENT_SPLIT,
  type PaymentSplitBps,
  paymentSplitProblem,
} from "./payment-tree.js";

/** Shared validation rules; see {@link resolveValidationPolicy} for the defaults. */
export interface ValidationPolicy {
  /** Address paid the treasury share of every payment tree. Required. */
  readonly treasuryAddress: string;
  /** Split of subnets that set none (and of the default subnet); default 8000/1000/500/500. */
  readonly defaultSplit: PaymentSplitBps;
  /**
   * Compute time billed per inference task at the node's hourly price, in milliseconds
   * (inference tasks are priced per task); default 1000.
   */
  readonly inferenceTaskComputeMs: number;
  /** Lifetime the registry gives a preprocessing approval, in milliseconds; default 300000. */
  readonly approvalTtlMs: number;
  /** Longest approval lifetime a validator signs, in milliseconds; default 900000. */
  readonly maxApprovalTtlMs: number;
  /** Clock difference tolerated between the registry, validators and nodes; default 30000 ms. */
  readonly clockSkewMs: number;
  /** Least proof-of-work difficulty of a routed node's record; default 0. */
  readonly minPowDifficulty: number;
}

/** {@link ValidationPolicy} with only the treasury required. */
export type ValidationPolicyOptions = Partial<ValidationPolicy> &
  Pick<ValidationPolicy, "treasuryAddress">;

/**
 * A frozen policy with defaults filled in.
 * @throws RangeError naming the first bad setting.
 */
export function resolveValidationPolicy(options: ValidationPolicyOptions): ValidationPolicy {
  const policy: ValidationPolicy = {
    treasuryAddress: options.treasuryAddress,
    defaultSplit: options.defaultSplit ?? DEFAULT_PAYMENT_SPLIT,
    inferenceTaskComputeMs: options.inferenceTaskComputeMs ?? 1000,
    approvalTtlMs: options.approvalTtlMs ?? 300_000,
    maxApprovalTtlMs: options.maxApprovalTtlMs ?? 900_000,
    clockSkewMs: options.clockSkewMs ?? 30_000,
    minPowDifficulty: options.minPowDifficulty ?? 0,
  };
  if (!isAddress(policy.treasuryAddress)) {
    throw new RangeError("treasuryAddress must be a valid address");
  }
  const splitProblem = paymentSplitProblem(policy.defaultSplit);
  if (splitProblem !== undefined) throw new RangeError(`defaultSplit: ${splitProblem}`);
  for (const name of [
    "inferenceTaskComputeMs",
    "approvalTtlMs",
    "maxApprovalTtlMs",
    "clockSkewMs",
    "minPowDifficulty",
  ] as const) {
    const value = policy[name];
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
    }
  }
  if (policy.approvalTtlMs < 1 || policy.approvalTtlMs > policy.maxApprovalTtlMs) {
    throw new RangeError("approvalTtlMs must be between 1 and maxApprovalTtlMs");
  }
  return Object.freeze(policy);
}
