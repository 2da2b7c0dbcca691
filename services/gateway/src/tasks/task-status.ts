/**
 * The wire views of a task: the client's InferenceTaskStatus (with PaymentStatus) and the
 * InferenceTask a node receives.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type InferenceTask,
  InferenceTaskSchema,
  type InferenceTaskStatus,
  InferenceTaskStatusSchema,
  PaymentStatusSchema,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { PROTOCOL_VERSION } from "../protocol-version.js";
import type { Task } from "./task.js";

/** The client's view of `task`; `gatewayAddress` is the escrow arbiter to name. */
export function taskStatus(task: Task, gatewayAddress: string): InferenceTaskStatus {
  const paymentStatus = task.paid
    ? create(PaymentStatusSchema, {
        required: true,
        preprocessingComplete: task.preprocessing !== undefined,
        paymentConfirmed: task.payment !== undefined,
        completionValidated: task.completionValidation !== undefined,
        released: task.settlement === "release" && task.settled && !task.settlementRefused,
        refunded: task.settlement === "refund" && task.settled && !task.settlementRefused,
        ...(task.preprocessing?.terms?.paymentTree === undefined
          ? {}
          : { paymentTree: task.preprocessing.terms.paymentTree }),
        amountDue: task.preprocessing === undefined ? "" : task.amountDue.toString(),
        escrowArbiterAddress: gatewayAddress,
        escrowId: task.payment?.escrowId ?? "",
      })
    : create(PaymentStatusSchema, { required: false });
  return create(InferenceTaskStatusSchema, {
    protocolVersion: PROTOCOL_VERSION,
    requestId: task.requestId,
    state: task.state,
    errorMessage: task.errorMessage,
    paymentStatus,
    ...(task.preprocessing === undefined ? {} : { preprocessingValidation: task.preprocessing }),
    modelId: task.modelId,
    subnetId: task.subnetId,
    assignedComputeNodeAddress: task.assignedAtMs === undefined ? "" : task.nodeAddress,
    createdAt: timestampFromMs(task.createdAtMs),
    updatedAt: timestampFromMs(task.updatedAtMs),
    deadline: timestampFromMs(task.deadlineMs),
  });
}

/** The task as node `task.nodeAddress` receives it. */
export function taskForNode(task: Task): InferenceTask {
  return create(InferenceTaskSchema, {
    protocolVersion: PROTOCOL_VERSION,
    requestId: task.requestId,
    modelId: task.modelId,
    input: task.input,
    inputMediaType: task.inputMediaType,
    inputTensors: [...task.inputTensors],
    clientAddress: task.clientAddress,
    subnetId: task.subnetId,
    ...(task.preprocessing === undefined ? {} : { preprocessingValidation: task.preprocessing }),
    ...(task.payment === undefined ? {} : { paymentConfirmation: task.payment }),
    ...(task.assignedAtMs === undefined ? {} : { assignedAt: timestampFromMs(task.assignedAtMs) }),
    assignedComputeNodeAddress: task.nodeAddress,
    deadline: timestampFromMs(task.deadlineMs),
  });
}
