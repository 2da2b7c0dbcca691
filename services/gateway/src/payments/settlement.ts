/**
 * Completion validation and settlement of paid tasks. A task's settlement is decided once:
 * "release" only after validators approve its result, "refund" when it fails, is cancelled or
 * expires after payment. Only the decided call is ever made (and retried while the wallet is
 * unreachable; both wallet calls are idempotent), so an escrow is paid out at most once and
 * never after a refund. Callers run these under the task's lock.
 */
import { InferenceTaskState } from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import type { Logger } from "@tessera/runtime";
import type { RegistryPort, WalletPort } from "@tessera/sdk/peer-clients";
import type { Task } from "../tasks/task.js";
import type { TaskTable } from "../tasks/task-table.js";
import { executionEvidence } from "./approval.js";
import { isUnreachable } from "./peer-failure.js";

/** What settlement works with. */
export interface SettlementOptions {
  readonly tasks: TaskTable;
  readonly wallet: WalletPort | undefined;
  readonly registry: RegistryPort | undefined;
  readonly now: () => number;
  /** Pause before retrying a peer that did not answer. */
  readonly retryMs: number;
  readonly logger: Logger;
}

/** See the module comment. */
export interface Settlement {
  /** Makes the decided wallet call once it is due; a no-op when nothing is decided or done. */
  settle(task: Task): Promise<void>;
  /**
   * Asks validators about a VALIDATING task's result: approved → release (COMPLETED once the
   * wallet pays out; at once for a task approved at price 0, which has no escrow); rejected or
   * refused → `fail(message)`, which ends the task and refunds (if anything was escrowed).
   */
  validate(task: Task, fail: (message: string) => void): Promise<void>;
}

/** A {@link Settlement}. */
export function createSettlement(options: SettlementOptions): Settlement {
  const { tasks, now, logger } = options;

  const settle = async (task: Task): Promise<void> => {
    const wallet = options.wallet;
    const escrowId = task.payment?.escrowId;
    if (task.settlement === "none" || task.settled || wallet === undefined || !escrowId) return;
    if (now() < task.retryAtMs) return;
    try {
      if (task.settlement === "release") {
        const validation = task.completionValidation;
        if (validation === undefined) return;
        await wallet.releaseEscrow(escrowId, validation);
        task.settled = true;
        if (task.state === InferenceTaskState.VALIDATING) {
          tasks.transition(task, InferenceTaskState.COMPLETED, now());
        } else {
          tasks.touch(task, now());
        }
      } else {
        await wallet.refundEscrow(escrowId, task.refundReason);
        task.settled = true;
        tasks.touch(task, now());
      }
    } catch (error) {
      if (isUnreachable(error)) {
        task.retryAtMs = now() + options.retryMs;
        logger.warn({ requestId: task.requestId, err: error }, "settlement deferred");
        return;
      }
      // The wallet refused for good (e.g. the escrow already expired back to its payer):
      // nothing can move this escrow any more, so the decision is done, unfulfilled.
      task.settled = true;
      task.settlementRefused = true;
      logger.error(
        { requestId: task.requestId, settlement: task.settlement, err: error },
        "the wallet refused the settlement",
      );
      if (task.state === InferenceTaskState.VALIDATING) {
        tasks.transition(
          task,
          InferenceTaskState.FAILED,
          now(),
          `the escrow could not be released: ${(error as Error).message}`,
        );
      } else {
        tasks.touch(task, now());
      }
    }
  };

  const validate = async (task: Task, fail: (message: string) => void): Promise<void> => {
    const registry = options.registry;
    const result = task.result;
    const completion = result?.computeCompletion;
    if (
      task.state !== InferenceTaskState.VALIDATING ||
      task.settlement !== "none" ||
      registry === undefined ||
      result === undefined ||
      completion === undefined ||
      task.preprocessing === undefined ||
      now() < task.retryAtMs
    ) {
      return;
    }
    try {
      const validation = await registry.requestCompletion(
        completion,
        task.preprocessing,
        executionEvidence(task, result),
      );
      if (task.state !== InferenceTaskState.VALIDATING || task.settlement !== "none") return;
      task.completionValidation = validation;
      if (validation.terms?.approved === true) {
        if (task.payment === undefined) {
          // Approved at a price of 0: no escrow to release, the verdict alone completes it.
          tasks.transition(task, InferenceTaskState.COMPLETED, now());
          return;
        }
        task.settlement = "release";
        tasks.touch(task, now());
        await settle(task);
      } else {
        fail("validators did not approve the result");
      }
    } catch (error) {
      if (isUnreachable(error)) {
        task.retryAtMs = now() + options.retryMs;
        logger.warn({ requestId: task.requestId, err: error }, "completion validation deferred");
        return;
      }
      fail(`completion validation refused: ${(error as Error).message}`);
    }
  };

  return { settle, validate };
}
