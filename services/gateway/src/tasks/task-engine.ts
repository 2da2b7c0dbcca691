/**
 * The inference task state machine: every verb that changes a task (submit, confirm payment,
 * cancel, a node's result, a node going away, deadlines) runs under the task's lock and re-checks
 * the state after each peer call. Money moves exactly once: a task's settlement is decided once
 * (release after approved validation, or refund), and only that decision is ever retried.
 *
 * ```
 * free: QUEUED → PROCESSING → COMPLETED
 * paid: AWAITING_PAYMENT → QUEUED → PROCESSING → VALIDATING → COMPLETED (released) | FAILED (refunded)
 * paid, approved price 0: QUEUED → PROCESSING → VALIDATING → COMPLETED | FAILED (no escrow)
 * any unfinished → CANCELLED; before payment → EXPIRED; after payment, deadline → FAILED (refunded)
 * ```
 *
 * A paid subnet's validators may approve a price of 0 (a node that asks nothing). The wallet
 * takes no zero escrow, so such a task skips AWAITING_PAYMENT: it is queued at once for the
 * approved node, its payment status says required, preprocessing complete, amount_due "0" and no
 * escrow (payment_confirmed stays false: there is none to confirm), and ConfirmPayment refuses
 * it. Its result is still completion-validated; the validators' verdict alone decides COMPLETED
 * or FAILED, and no money moves either way. A re-route that would cost more than 0 fails it, as
 * for any task whose new route costs more than its escrow holds.
 */
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { bytesEqual, sha256 } from "@tessera/identity/hash";
import { verifyComputeCompletion } from "@tessera/identity/validation-bundle";
import { RAW_TENSORS_MEDIA_TYPE, TensorError, unpackRawTensors } from "@tessera/ml/tensors";
import type { ModelDescriptor } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { SubmitInferenceTaskRequest } from "@tessera/proto/tessera/gateway/v1/gateway_client_service_pb.js";
import {
  InferenceOutcome,
  type InferenceResult,
  InferenceResultSchema,
  InferenceTaskState,
  type PaymentConfirmation,
  PaymentConfirmationSchema,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { EscrowState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import type { Logger } from "@tessera/runtime";
import type { RegistryPort, WalletPort } from "@tessera/sdk/peer-clients";
import type { Dispatcher } from "../dispatch/dispatcher.js";
import { canReceive, nodeLoads, pickNode } from "../dispatch/placement.js";
import { GatewayError, invalidArgument } from "../errors.js";
import type { ModelDirectory } from "../models/model-directory.js";
import type { GatewayNode, NodeBook } from "../nodes/node-book.js";
import { requestApproval } from "../payments/approval.js";
import { escrowProblem, treeTotal } from "../payments/escrow-check.js";
import { fromPeerError } from "../payments/peer-failure.js";
import { createSettlement } from "../payments/settlement.js";
import type { SubnetPayment } from "../payments/subnet-payment.js";
import { PROTOCOL_VERSION } from "../protocol-version.js";
import { createKeyedLock } from "./keyed-lock.js";
import { checkInputSize, checkRequestId, checkTaskInput, submissionHash } from "./submission.js";
import { isTerminal, needsNoEscrow, stateName, type Task } from "./task.js";
import type { TaskTable } from "./task-table.js";

/** Limits and timings of the engine. */
export interface EngineLimits {
  readonly maxInputBytes: number;
  readonly maxOutputBytes: number;
  readonly maxTasksInFlight: number;
  readonly taskTimeoutMs: number;
  readonly maxTaskTimeoutMs: number;
  readonly escrowMarginMs: number;
  readonly retentionMs: number;
  /** Pause before retrying a peer call that failed. */
  readonly retryMs: number;
}

/** What the engine works with. */
export interface TaskEngineOptions {
  readonly gatewayAddress: string;
  readonly subnetId: bigint;
  readonly tasks: TaskTable;
  readonly nodes: NodeBook;
  readonly directory: ModelDirectory;
  readonly dispatcher: Dispatcher;
  readonly subnetPayment: SubnetPayment;
  readonly registry: RegistryPort | undefined;
  readonly wallet: WalletPort | undefined;
  readonly limits: EngineLimits;
  readonly now: () => number;
  readonly logger: Logger;
}

/** See the module comment. */
export interface TaskEngine {
  /** Accepts a client's task (idempotent on request id and body). */
  submit(request: SubmitInferenceTaskRequest, caller: string): Promise<Task>;
  /** Checks the escrow with the wallet and queues the task (idempotent per escrow id). */
  confirmPayment(confirmation: PaymentConfirmation, caller: string): Promise<Task>;
  /** Cancels an unfinished task, refunding a funded escrow. */
  cancel(requestId: string, reason: string, caller: string): Promise<Task>;
  /** The caller's task. @throws GatewayError not_found / permission_denied */
  clientTask(requestId: string, caller: string): Task;
  /** A node's result for a task assigned to it (idempotent per result hash). */
  submitResult(result: InferenceResult, caller: string): Promise<Task>;
  /** Puts tasks sent to `nodeAddress` that never left the gateway back in the queue. */
  requeue(nodeAddress: string, requestIds: readonly string[]): Promise<void>;
  /** A task assigned to the calling node. */
  nodeTask(requestId: string, caller: string): Task;
  /** The model `modelId` as served, or undefined. */
  model(modelId: string): ModelDescriptor | undefined;
  /** One sweep: gone nodes, deadlines, re-routes, validation and settlement retries, retention. */
  sweep(): Promise<void>;
  /** Resolves once work started in the background (settlements) has finished. */
  idle(): Promise<void>;
}

const FAILED_RESULT_REROUTES = 1;

/** A new {@link TaskEngine}. */
export function createTaskEngine(options: TaskEngineOptions): TaskEngine {
  const { tasks, nodes, directory, dispatcher, limits, now, logger } = options;
  const lock = createKeyedLock();
  const background = new Set<Promise<unknown>>();

  const inBackground = (work: Promise<unknown>) => {
    const tracked = work.catch((error) => logger.error({ err: error }, "background step failed"));
    background.add(tracked);
    void tracked.finally(() => background.delete(tracked));
  };

  const model = (modelId: string) => directory.describe(modelId, nodes.all());

  const requireTask = (requestId: string): Task => {
    const task = tasks.get(requestId);
    if (task === undefined) throw new GatewayError("not_found", `no task "${requestId}"`);
    return task;
  };

  const ownTask = (requestId: string, caller: string): Task => {
    const task = requireTask(requestId);
    if (task.clientAddress !== caller) {
      throw new GatewayError("permission_denied", `task "${requestId}" belongs to another client`);
    }
    return task;
  };

  const stopOnNode = (task: Task) => {
    if (task.assignedAtMs === undefined || task.nodeAddress === "") return;
    nodes.get(task.nodeAddress)?.cancelled.add(task.requestId);
  };

  /** Ends `task` in `state`; a funded, unsettled escrow is refunded (in the background). */
  const finish = (task: Task, state: InferenceTaskState, message: string) => {
    if (isTerminal(task.state)) return;
    if (task.state === InferenceTaskState.PROCESSING) stopOnNode(task);
    if (task.payment !== undefined && task.settlement === "none") {
      task.settlement = "refund";
      task.refundReason = message || stateName(state);
    }
    tasks.transition(task, state, now(), message);
    if (task.settlement === "refund" && !task.settled) inBackground(settleUnderLock(task));
  };

  const settlement = createSettlement({
    tasks,
    wallet: options.wallet,
    registry: options.registry,
    now,
    retryMs: limits.retryMs,
    logger,
  });
  const settle = (task: Task) => settlement.settle(task);
  const settleUnderLock = (task: Task) => lock.run(task.requestId, () => settle(task));
  const validate = (task: Task) =>
    settlement.validate(task, (message) => finish(task, InferenceTaskState.FAILED, message));

  // Routing --------------------------------------------------------------------------------------

  const approve = (task: Task, node: GatewayNode, registry: RegistryPort) =>
    requestApproval(registry, task, node.address, options.gatewayAddress);

  /** Whether another node than the task's current one could take it now. */
  const hasOtherNode = (task: Task) =>
    pickNode(task, { nodes, loads: new Map(), nowMs: now(), streamRequired: false }) !== undefined;

  /** Moves a task whose node lost or failed it back to the queue, towards another node. */
  const reroute = (task: Task, reason: string) => {
    stopOnNode(task);
    if (task.nodeAddress !== "") task.excludedNodes.add(task.nodeAddress);
    task.assignedAtMs = undefined;
    if (task.paid) {
      task.needsRoute = true;
      task.retryAtMs = 0;
    } else {
      task.nodeAddress = "";
    }
    tasks.transition(task, InferenceTaskState.QUEUED, now());
    logger.info({ requestId: task.requestId, reason }, "task re-routed");
  };

  /** A paid task waiting for a new approval: find a node and get the registry to approve it. */
  const findRoute = async (task: Task): Promise<void> => {
    const registry = options.registry;
    if (
      !task.needsRoute ||
      task.state !== InferenceTaskState.QUEUED ||
      registry === undefined ||
      now() < task.retryAtMs
    ) {
      return;
    }
    const nowMs = now();
    const current = nodes.get(task.nodeAddress);
    if (
      current !== undefined &&
      canReceive(current, task.modelId, nodes.isOnline(current, nowMs))
    ) {
      // The approved node is back: the approval still names it.
      task.needsRoute = false;
      task.excludedNodes.delete(current.address);
      tasks.touch(task, nowMs);
      dispatcher.wake();
      return;
    }
    const node = pickNode(task, { nodes, loads: nodeLoads(tasks), nowMs, streamRequired: true });
    if (node === undefined) {
      task.retryAtMs = nowMs + limits.retryMs;
      return;
    }
    try {
      const approval = await approve(task, node, registry);
      if (task.state !== InferenceTaskState.QUEUED || !task.needsRoute) return;
      const routed = approval.terms?.route?.computeNodeAddress ?? "";
      const total = treeTotal(approval.terms?.paymentTree ?? emptyTree);
      if (routed !== node.address) {
        // The registry still holds the earlier approval (it sees the old node online).
        task.retryAtMs = now() + limits.retryMs;
        return;
      }
      if (total > escrowAmount(task)) {
        finish(
          task,
          InferenceTaskState.FAILED,
          `the new route costs ${total}, more than the escrow holds`,
        );
        return;
      }
      task.preprocessing = approval;
      task.amountDue = total;
      task.nodeAddress = node.address;
      task.needsRoute = false;
      tasks.touch(task, now());
      dispatcher.wake();
    } catch (error) {
      task.retryAtMs = now() + limits.retryMs;
      logger.warn({ requestId: task.requestId, err: error }, "re-approval deferred");
    }
  };

  // Sweeps -----------------------------------------------------------------------------------

  const nodeGone = (node: GatewayNode) => {
    logger.warn({ node: node.address }, "compute node gone; re-routing its tasks");
    for (const task of [...tasks.unfinished()]) {
      if (task.nodeAddress !== node.address) continue;
      if (
        task.state === InferenceTaskState.PROCESSING ||
        (task.state === InferenceTaskState.QUEUED && !task.needsRoute)
      ) {
        const t = task;
        inBackground(lock.run(t.requestId, async () => reroute(t, `node ${node.address} is gone`)));
      }
    }
  };

  const enforceDeadline = (task: Task, nowMs: number) => {
    switch (task.state) {
      case InferenceTaskState.PENDING_APPROVAL:
      case InferenceTaskState.AWAITING_PAYMENT: {
        const approvalEnd = task.preprocessing?.terms?.expiresAt;
        if (nowMs >= task.deadlineMs) {
          finish(task, InferenceTaskState.EXPIRED, "the deadline passed before payment");
        } else if (approvalEnd !== undefined && nowMs >= timestampMs(approvalEnd)) {
          finish(task, InferenceTaskState.EXPIRED, "the approval expired before payment");
        }
        return;
      }
      case InferenceTaskState.QUEUED:
      case InferenceTaskState.PROCESSING:
        if (nowMs >= task.deadlineMs) {
          finish(task, InferenceTaskState.FAILED, "the deadline passed before a result arrived");
        }
        return;
      case InferenceTaskState.VALIDATING:
        // The result is in; validators get until half the escrow margin past the deadline.
        if (task.settlement === "none" && nowMs >= task.deadlineMs + limits.escrowMarginMs / 2) {
          finish(task, InferenceTaskState.FAILED, "the result could not be validated in time");
        }
        return;
      default:
        return;
    }
  };

  // Verbs ----------------------------------------------------------------------------------

  const submit = async (request: SubmitInferenceTaskRequest, caller: string): Promise<Task> => {
    checkRequestId(request.requestId);
    if (request.clientAddress !== caller) {
      throw new GatewayError(
        "permission_denied",
        "client_address must be the signed caller of the request",
      );
    }
    if (request.subnetId !== options.subnetId) {
      throw invalidArgument(
        "subnet_id",
        `this gateway serves subnet ${options.subnetId}, not ${request.subnetId}`,
      );
    }
    if (request.maxPrice !== "" && !/^[0-9]{1,78}$/.test(request.maxPrice)) {
      throw invalidArgument("max_price", "must be a decimal integer of base units, or empty");
    }
    const bodyHash = submissionHash(request);
    return lock.run(request.requestId, async () => {
      const existing = tasks.get(request.requestId);
      if (existing !== undefined) {
        if (existing.clientAddress === caller && existing.bodyHash === bodyHash) return existing;
        throw new GatewayError(
          "already_exists",
          `request id "${request.requestId}" was already used with a different request`,
        );
      }
      checkInputSize(request.input, limits.maxInputBytes);
      if (request.modelId === "") throw invalidArgument("model_id", "is required");
      const descriptor = model(request.modelId);
      if (descriptor === undefined) {
        throw new GatewayError(
          "not_found",
          `this gateway does not serve model "${request.modelId}"`,
        );
      }
      checkTaskInput(request, descriptor);
      if (tasks.inFlight() >= limits.maxTasksInFlight) {
        throw new GatewayError(
          "resource_exhausted",
          `the gateway holds ${limits.maxTasksInFlight} unfinished tasks (MAX_TASKS_IN_FLIGHT); retry later`,
        );
      }
      const paid = await options.subnetPayment.required();
      const nowMs = now();
      const timeoutMs =
        request.timeoutMs === 0n
          ? limits.taskTimeoutMs
          : Math.min(Number(request.timeoutMs), limits.maxTaskTimeoutMs);
      const task: Task = {
        requestId: request.requestId,
        clientAddress: caller,
        modelId: request.modelId,
        subnetId: request.subnetId,
        input: request.input,
        inputMediaType: request.inputMediaType,
        inputTensors: request.inputTensors,
        maxPrice: request.maxPrice,
        bodyHash,
        inputHash: sha256(request.input),
        createdAtMs: nowMs,
        deadlineMs: nowMs + Math.min(timeoutMs, limits.maxTaskTimeoutMs),
        paid,
        state: paid ? InferenceTaskState.PENDING_APPROVAL : InferenceTaskState.QUEUED,
        updatedAtMs: nowMs,
        errorMessage: "",
        preprocessing: undefined,
        amountDue: 0n,
        payment: undefined,
        nodeAddress: "",
        assignedAtMs: undefined,
        excludedNodes: new Set(),
        failedReroutes: 0,
        needsRoute: false,
        result: undefined,
        completionValidation: undefined,
        settlement: "none",
        settled: false,
        settlementRefused: false,
        refundReason: "",
        retryAtMs: 0,
        finishedAtMs: undefined,
      };
      if (paid) {
        const registry = options.registry;
        if (registry === undefined || options.wallet === undefined) {
          throw new GatewayError("unavailable", "paid tasks need a registry and a wallet");
        }
        const node = pickNode(task, {
          nodes,
          loads: nodeLoads(tasks),
          nowMs,
          streamRequired: false,
        });
        if (node === undefined) {
          throw new GatewayError(
            "unavailable",
            `no online compute node hosts model "${request.modelId}"`,
          );
        }
        let approval: Awaited<ReturnType<RegistryPort["requestPreprocessing"]>>;
        try {
          approval = await approve(task, node, registry);
        } catch (error) {
          throw fromPeerError(error);
        }
        const tree = approval.terms?.paymentTree;
        if (tree === undefined) {
          throw new GatewayError("unavailable", "the registry's approval has no payment tree");
        }
        task.preprocessing = approval;
        task.amountDue = treeTotal(tree);
        task.nodeAddress = approval.terms?.route?.computeNodeAddress ?? node.address;
        // Nothing to escrow for an approved price of 0: straight to the queue (module comment).
        task.state =
          task.amountDue === 0n ? InferenceTaskState.QUEUED : InferenceTaskState.AWAITING_PAYMENT;
        task.updatedAtMs = now();
      }
      tasks.insert(task);
      // Per task at debug: the RPC's own log line already records every submission.
      logger.debug(
        { requestId: task.requestId, modelId: task.modelId, paid, state: stateName(task.state) },
        "task accepted",
      );
      if (task.state === InferenceTaskState.QUEUED) dispatcher.wake();
      return task;
    });
  };

  const confirmPayment = async (
    confirmation: PaymentConfirmation,
    caller: string,
  ): Promise<Task> => {
    checkRequestId(confirmation.requestId, "confirmation.request_id");
    if (confirmation.escrowId === "")
      throw invalidArgument("confirmation.escrow_id", "is required");
    if (confirmation.payerAddress !== "" && confirmation.payerAddress !== caller) {
      throw new GatewayError("permission_denied", "confirmation.payer_address must be the caller");
    }
    return lock.run(confirmation.requestId, async () => {
      const task = ownTask(confirmation.requestId, caller);
      if (task.payment !== undefined) {
        if (task.payment.escrowId === confirmation.escrowId) return task;
        throw new GatewayError(
          "failed_precondition",
          `task "${task.requestId}" is already paid by escrow ${task.payment.escrowId}`,
        );
      }
      if (!task.paid) {
        throw new GatewayError("failed_precondition", `task "${task.requestId}" is free`);
      }
      if (needsNoEscrow(task)) {
        throw new GatewayError(
          "failed_precondition",
          `task "${task.requestId}" was approved at a price of 0 and needs no payment`,
        );
      }
      const approvalEnd = task.preprocessing?.terms?.expiresAt;
      const expired =
        task.state === InferenceTaskState.EXPIRED ||
        (task.state === InferenceTaskState.AWAITING_PAYMENT &&
          (now() >= task.deadlineMs ||
            approvalEnd === undefined ||
            now() >= timestampMs(approvalEnd)));
      if (!expired && task.state !== InferenceTaskState.AWAITING_PAYMENT) {
        throw new GatewayError(
          "failed_precondition",
          `task "${task.requestId}" is ${stateName(task.state)}, not AWAITING_PAYMENT`,
        );
      }
      const wallet = options.wallet;
      if (wallet === undefined) throw new GatewayError("unavailable", "no wallet is configured");
      let escrow: Awaited<ReturnType<WalletPort["getEscrow"]>>;
      try {
        escrow = await wallet.getEscrow(confirmation.escrowId);
      } catch (error) {
        const failure = fromPeerError(error);
        if (failure instanceof GatewayError && failure.kind === "not_found") {
          throw new GatewayError(
            "failed_precondition",
            `escrow ${confirmation.escrowId} does not exist`,
          );
        }
        throw failure;
      }
      const problem = escrowProblem(escrow, task, {
        gatewayAddress: options.gatewayAddress,
        marginMs: limits.escrowMarginMs,
      });
      if (expired) {
        if (task.state === InferenceTaskState.AWAITING_PAYMENT) {
          finish(task, InferenceTaskState.EXPIRED, "the approval expired before payment");
        }
        // An escrow made for this task can only be refunded now; give it back to its payer.
        if (
          escrow.state === EscrowState.HELD &&
          escrow.arbiterAddress === options.gatewayAddress &&
          escrow.jobId === task.requestId &&
          escrow.payerAddress === task.clientAddress
        ) {
          inBackground(
            wallet.refundEscrow(escrow.escrowId, "the task's approval expired before payment"),
          );
        }
        throw new GatewayError(
          "failed_precondition",
          `the approval of task "${task.requestId}" has expired; submit a new task`,
        );
      }
      if (problem !== undefined) throw new GatewayError("failed_precondition", problem);
      task.payment = create(PaymentConfirmationSchema, {
        requestId: task.requestId,
        escrowId: escrow.escrowId,
        payerAddress: escrow.payerAddress,
        amount: escrow.amount,
        ...(escrow.createdAt === undefined ? {} : { fundedAt: escrow.createdAt }),
      });
      const node = nodes.get(task.nodeAddress);
      if (node === undefined || node.gone) {
        task.excludedNodes.add(task.nodeAddress);
        task.needsRoute = true;
      }
      tasks.transition(task, InferenceTaskState.QUEUED, now());
      logger.info({ requestId: task.requestId, escrowId: escrow.escrowId }, "payment confirmed");
      dispatcher.wake();
      return task;
    });
  };

  const cancel = (requestId: string, reason: string, caller: string): Promise<Task> => {
    if (reason.length > 256) throw invalidArgument("reason", "must be at most 256 characters");
    return lock.run(requestId, async () => {
      const task = ownTask(requestId, caller);
      if (task.state === InferenceTaskState.CANCELLED) return task;
      if (isTerminal(task.state)) {
        throw new GatewayError(
          "failed_precondition",
          `task "${requestId}" is already ${stateName(task.state)}`,
        );
      }
      if (task.settlement === "release") {
        throw new GatewayError(
          "failed_precondition",
          `task "${requestId}" was validated and is being paid out`,
        );
      }
      if (task.state === InferenceTaskState.PROCESSING) stopOnNode(task);
      if (task.payment !== undefined) {
        task.settlement = "refund";
        task.refundReason = reason === "" ? "cancelled by the client" : `cancelled: ${reason}`;
      }
      tasks.transition(task, InferenceTaskState.CANCELLED, now(), "");
      await settle(task);
      return task;
    });
  };

  const submitResult = (result: InferenceResult, caller: string): Promise<Task> => {
    const completion = result.computeCompletion;
    checkRequestId(result.requestId, "result.request_id");
    if (completion === undefined) {
      throw invalidArgument("result.compute_completion", "is required");
    }
    if (result.completionValidation !== undefined) {
      throw invalidArgument("result.completion_validation", "must be empty (the gateway sets it)");
    }
    if (completion.computeNodeAddress !== caller) {
      throw new GatewayError(
        "permission_denied",
        "compute_completion.compute_node_address must be the signed caller",
      );
    }
    if (completion.requestId !== result.requestId) {
      throw invalidArgument("result.compute_completion.request_id", "differs from the result's");
    }
    if (result.outcome === InferenceOutcome.UNSPECIFIED) {
      throw invalidArgument("result.outcome", "is required");
    }
    if (!verifyComputeCompletion(completion)) {
      throw new GatewayError(
        "unauthenticated",
        "the compute completion's signature does not verify",
      );
    }
    if (!bytesEqual(completion.resultHash, sha256(result.output))) {
      throw invalidArgument("result.compute_completion.result_hash", "is not SHA-256 of output");
    }
    if (result.output.length > limits.maxOutputBytes) {
      throw new GatewayError(
        "resource_exhausted",
        `output is ${result.output.length} bytes, above the limit of ${limits.maxOutputBytes} (MAX_OUTPUT_BYTES)`,
      );
    }
    if (result.outcome === InferenceOutcome.SUCCEEDED) checkOutput(result);
    return lock.run(result.requestId, async () => {
      const task = requireTask(result.requestId);
      if (task.nodeAddress !== caller || task.assignedAtMs === undefined) {
        if (task.result?.computeCompletion?.computeNodeAddress === caller) {
          return sameResult(task, result);
        }
        throw new GatewayError(
          "failed_precondition",
          `task "${task.requestId}" is not assigned to the caller`,
        );
      }
      if (task.result !== undefined) return sameResult(task, result);
      if (task.state !== InferenceTaskState.PROCESSING) {
        throw new GatewayError(
          "failed_precondition",
          `task "${task.requestId}" is ${stateName(task.state)}; no result is taken`,
        );
      }
      if (now() >= task.deadlineMs) {
        throw new GatewayError(
          "failed_precondition",
          `task "${task.requestId}" is past its deadline`,
        );
      }
      if (result.outcome === InferenceOutcome.FAILED) {
        const message = `node ${caller} failed the task: ${result.errorMessage.slice(0, 512)}`;
        if (task.failedReroutes < FAILED_RESULT_REROUTES && hasOtherNodeThan(task, caller)) {
          task.failedReroutes += 1;
          reroute(task, message);
          dispatcher.wake();
        } else {
          task.result = stamp(result);
          finish(task, InferenceTaskState.FAILED, message);
        }
        return task;
      }
      task.result = stamp(result);
      if (!task.paid) {
        tasks.transition(task, InferenceTaskState.COMPLETED, now());
        return task;
      }
      tasks.transition(task, InferenceTaskState.VALIDATING, now());
      inBackground(lock.run(task.requestId, () => validate(task)));
      return task;
    });
  };

  const hasOtherNodeThan = (task: Task, address: string) => {
    task.excludedNodes.add(address);
    const other = hasOtherNode(task);
    task.excludedNodes.delete(address);
    return other;
  };

  const sameResult = (task: Task, result: InferenceResult): Task => {
    const earlier = task.result?.computeCompletion?.resultHash;
    const hash = result.computeCompletion?.resultHash;
    if (earlier !== undefined && hash !== undefined && bytesEqual(earlier, hash)) return task;
    throw new GatewayError(
      "already_exists",
      `task "${task.requestId}" already has a different result`,
    );
  };

  const checkOutput = (result: InferenceResult) => {
    const media = (result.outputMediaType.split(";")[0] ?? "").trim().toLowerCase();
    if (media !== RAW_TENSORS_MEDIA_TYPE) {
      throw invalidArgument("result.output_media_type", `must be ${RAW_TENSORS_MEDIA_TYPE}`);
    }
    try {
      unpackRawTensors(result.output, result.outputTensors);
    } catch (error) {
      if (error instanceof TensorError) throw invalidArgument("result.output", error.message);
      throw error;
    }
  };

  const stamp = (result: InferenceResult): InferenceResult =>
    create(InferenceResultSchema, { ...result, protocolVersion: PROTOCOL_VERSION });

  const sweep = async () => {
    const nowMs = now();
    for (const node of nodes.takeGone(nowMs)) nodeGone(node);
    const work: Promise<unknown>[] = [];
    for (const task of [...tasks.all()]) {
      if (isTerminal(task.state)) {
        if (task.settlement !== "none" && !task.settled && nowMs >= task.retryAtMs) {
          work.push(settleUnderLock(task));
        }
        continue;
      }
      if (!needsSweep(task, nowMs)) continue;
      const t = task;
      work.push(
        lock.run(t.requestId, async () => {
          enforceDeadline(t, now());
          if (t.needsRoute) await findRoute(t);
          if (t.state === InferenceTaskState.VALIDATING) {
            if (t.settlement === "none") await validate(t);
            else await settle(t);
          }
        }),
      );
    }
    await Promise.all(work);
    tasks.dropRetired(now(), limits.retentionMs);
    dispatcher.wake();
  };

  return {
    submit,
    confirmPayment,
    cancel,
    clientTask: ownTask,
    submitResult,
    nodeTask(requestId, caller) {
      const task = requireTask(requestId);
      if (task.nodeAddress !== caller || task.assignedAtMs === undefined) {
        throw new GatewayError(
          "permission_denied",
          `task "${requestId}" is not assigned to the caller`,
        );
      }
      return task;
    },
    model,
    async requeue(nodeAddress, requestIds) {
      await Promise.all(
        requestIds.map((requestId) =>
          lock.run(requestId, async () => {
            const task = tasks.get(requestId);
            if (
              task === undefined ||
              task.state !== InferenceTaskState.PROCESSING ||
              task.nodeAddress !== nodeAddress
            ) {
              return;
            }
            task.assignedAtMs = undefined;
            // A paid task keeps its approved node; a free one may go anywhere.
            if (!task.paid) task.nodeAddress = "";
            tasks.transition(task, InferenceTaskState.QUEUED, now());
          }),
        ),
      );
    },
    sweep,
    async idle() {
      while (background.size > 0) await Promise.all([...background]);
    },
  };
}

/** Whether an unfinished task has something for the sweeper: a deadline, a route, a verdict. */
function needsSweep(task: Task, nowMs: number): boolean {
  if (task.needsRoute || task.state === InferenceTaskState.VALIDATING) return true;
  if (nowMs >= task.deadlineMs) return true;
  const approvalEnd = task.preprocessing?.terms?.expiresAt;
  return (
    task.state === InferenceTaskState.AWAITING_PAYMENT &&
    approvalEnd !== undefined &&
    nowMs >= timestampMs(approvalEnd)
  );
}

const emptyTree = { computeAmount: "", gatewayAmount: "", validatorAmount: "", treasuryAmount: "" };

function escrowAmount(task: Task): bigint {
  const amount = task.payment?.amount ?? "";
  return /^[0-9]{1,78}$/.test(amount) ? BigInt(amount) : 0n;
}
