/**
 * Whether a wallet escrow pays for a task: held, by the task's client, with this gateway as
 * arbiter, for the task's request id, holding at least the approved total, and lasting past the
 * task's deadline by the margin settling needs.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Escrow, EscrowState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import type { Task } from "../tasks/task.js";

/** What the escrow is checked against. */
export interface EscrowExpectations {
  readonly gatewayAddress: string;
  readonly marginMs: number;
}

function amountOf(text: string): bigint | undefined {
  return /^[0-9]{1,78}$/.test(text) ? BigInt(text) : undefined;
}

/** Why `escrow` does not pay for `task`, in words, or undefined when it does. */
export function escrowProblem(
  escrow: Escrow,
  task: Task,
  expect: EscrowExpectations,
): string | undefined {
  const id = `escrow ${escrow.escrowId}`;
  if (escrow.state !== EscrowState.HELD) return `${id} is not held (${EscrowState[escrow.state]})`;
  if (escrow.arbiterAddress !== expect.gatewayAddress) {
    return `${id} names arbiter ${escrow.arbiterAddress}, not this gateway ${expect.gatewayAddress}`;
  }
  if (escrow.payerAddress !== task.clientAddress) {
    return `${id} is paid by ${escrow.payerAddress}, not the task's client`;
  }
  if (escrow.jobId !== task.requestId) {
    return `${id} is for job "${escrow.jobId}", not request "${task.requestId}"`;
  }
  const amount = amountOf(escrow.amount);
  if (amount === undefined || amount < task.amountDue) {
    return `${id} holds ${escrow.amount}, less than the ${task.amountDue} due`;
  }
  const needUntil = task.deadlineMs + expect.marginMs;
  if (escrow.expiresAt === undefined || timestampMs(escrow.expiresAt) < needUntil) {
    return `${id} expires before ${new Date(needUntil).toISOString()} (the task's deadline plus ${expect.marginMs} ms)`;
  }
  return undefined;
}

/** Sum of an approval's payment tree. */
export function treeTotal(tree: {
  computeAmount: string;
  gatewayAmount: string;
  validatorAmount: string;
  treasuryAmount: string;
}): bigint {
  return [tree.computeAmount, tree.gatewayAmount, tree.validatorAmount, tree.treasuryAmount]
    .map((part) => amountOf(part) ?? 0n)
    .reduce((a, b) => a + b, 0n);
}
