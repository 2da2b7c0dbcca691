/**
 * One inference task as the gateway holds it in memory, and the rules of its states.
 */
import type {
  CompletionValidation,
  PreprocessingValidation,
  TensorSpec,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type InferenceResult,
  InferenceTaskState,
  type PaymentConfirmation,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";

/** What is settled, and how, for a paid task; once decided, a decision never changes. */
export type Settlement = "none" | "release" | "refund";

/** An inference task. Mutated only by the gateway engine, under the task's lock. */
export interface Task {
  readonly requestId: string;
  readonly clientAddress: string;
  readonly modelId: string;
  readonly subnetId: bigint;
  readonly input: Uint8Array;
  readonly inputMediaType: string;
  readonly inputTensors: readonly TensorSpec[];
  readonly maxPrice: string;
  /** SHA-256 (hex) of the submission without its protocol version: idempotency key. */
  readonly bodyHash: string;
  /** SHA-256 of `input`. */
  readonly inputHash: Uint8Array;
  readonly createdAtMs: number;
  readonly deadlineMs: number;
  /** Whether the task must be paid for (decided once, at submission). */
  readonly paid: boolean;
  state: InferenceTaskState;
  updatedAtMs: number;
  errorMessage: string;
  /** The current route-and-price approval (paid tasks). */
  preprocessing: PreprocessingValidation | undefined;
  /** Sum of the approval's payment tree. */
  amountDue: bigint;
  /** The escrow that pays, once confirmed. */
  payment: PaymentConfirmation | undefined;
  /** The node the task is (or will be) sent to; for paid tasks the approved route. */
  nodeAddress: string;
  assignedAtMs: number | undefined;
  /** Nodes that lost or failed this task: not proposed again. */
  readonly excludedNodes: Set<string>;
  /** Re-routes after a node reported FAILED (at most one). */
  failedReroutes: number;
  /** A paid task whose node went away waits for a new approval before it is sent anywhere. */
  needsRoute: boolean;
  result: InferenceResult | undefined;
  completionValidation: CompletionValidation | undefined;
  settlement: Settlement;
  /** Whether the settlement is done: the wallet made it, or refused it for good. */
  settled: boolean;
  /** Whether the wallet refused the settlement for good (the escrow was already settled). */
  settlementRefused: boolean;
  /** Why the escrow is refunded (for the wallet record). */
  refundReason: string;
  /** Earliest time of the next retry of a peer call (validation, settlement, re-approval). */
  retryAtMs: number;
  /** When the task reached a terminal state. */
  finishedAtMs: number | undefined;
}

const TERMINAL = new Set([
  InferenceTaskState.COMPLETED,
  InferenceTaskState.FAILED,
  InferenceTaskState.CANCELLED,
  InferenceTaskState.EXPIRED,
]);

/** Whether `state` is final. */
export function isTerminal(state: InferenceTaskState): boolean {
  return TERMINAL.has(state);
}

/** The state's short name for messages: "AWAITING_PAYMENT". */
export function stateName(state: InferenceTaskState): string {
  return InferenceTaskState[state] ?? String(state);
}

/** Whether the task's escrow was confirmed (and so must be settled exactly once). */
export function isFunded(task: Task): boolean {
  return task.payment !== undefined;
}

/**
 * Whether a paid task runs with no escrow: its validators approved a price of 0 and nothing was
 * escrowed (the wallet takes no zero escrow). It is dispatched and validated all the same.
 */
export function needsNoEscrow(task: Task): boolean {
  return (
    task.paid &&
    task.preprocessing !== undefined &&
    task.amountDue === 0n &&
    task.payment === undefined
  );
}
