/**
 * Running one inference task the gateway assigned: check it is meant for this node, decode its
 * input, run the hosted model (batched by the model host with concurrent tasks of the same model),
 * pack the outputs as raw tensors and attest the result with a signed ComputeCompletion over
 * SHA-256 of the output. A task the model cannot run ends FAILED with a message that never
 * contains the input or output. Imports nothing from Connect.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { sha256 } from "@tessera/identity/hash";
import type { KeyPair } from "@tessera/identity/keys";
import { signComputeCompletion } from "@tessera/identity/validation-bundle";
import type { HostedModel } from "@tessera/ml/model-host";
import {
  decodeTaskInput,
  packRawTensors,
  RAW_TENSORS_MEDIA_TYPE,
  TensorError,
} from "@tessera/ml/tensors";
import { ComputeCompletionSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  InferenceOutcome,
  type InferenceResult,
  InferenceResultSchema,
  type InferenceTask,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import type { Logger } from "@tessera/runtime";
import { NODE_PROTOCOL_VERSION } from "../protocol-version.js";

/** What {@link runInferenceTask} needs of the node. */
export interface InferenceTaskDeps {
  readonly keyPair: KeyPair;
  /** The hosted model with this id, if any. */
  readonly model: (modelId: string) => HostedModel | undefined;
  readonly logger: Logger;
  /** Clock; default now. */
  readonly now?: (() => Date) | undefined;
}

/** Why a task is refused before any compute (its outcome is FAILED with this message). */
class TaskRefusal extends Error {
  override readonly name = "TaskRefusal";
}

/**
 * Whether the task is meant for this node: assigned to it, for this request, and, on a paid
 * subnet, approved by validators for a route through this node that has not expired. (The
 * validators' signatures are the gateway's to check against the registry's validator set; the
 * node checks the terms it can judge on its own.)
 * @throws TaskRefusal
 */
function checkAssignment(task: InferenceTask, nodeAddress: string, now: Date): void {
  if (task.assignedComputeNodeAddress !== "" && task.assignedComputeNodeAddress !== nodeAddress) {
    throw new TaskRefusal(
      `the task is assigned to ${task.assignedComputeNodeAddress}, not this node`,
    );
  }
  const terms = task.preprocessingValidation?.terms;
  if (terms === undefined) return;
  if (terms.requestId !== task.requestId || terms.modelId !== task.modelId) {
    throw new TaskRefusal("the task's preprocessing approval is for another request or model");
  }
  const routed = terms.route?.computeNodeAddress ?? "";
  if (routed !== "" && routed !== nodeAddress) {
    throw new TaskRefusal(
      `the task's preprocessing approval routes it to ${routed}, not this node`,
    );
  }
  if (terms.expiresAt !== undefined && timestampDate(terms.expiresAt) <= now) {
    throw new TaskRefusal("the task's preprocessing approval has expired");
  }
}

/**
 * Runs `task` and returns its signed result: SUCCEEDED with the outputs as raw tensors, or FAILED
 * with `error_message` when the task is not for this node, its model is not hosted here, its input
 * does not fit the model or the model fails on it.
 * @throws the signal's reason when `signal` aborts (cancelled or deadline passed): no result then.
 */
export async function runInferenceTask(
  task: InferenceTask,
  deps: InferenceTaskDeps,
  signal: AbortSignal,
): Promise<InferenceResult> {
  const now = deps.now ?? (() => new Date());
  const nodeAddress = deps.keyPair.address;
  const started = Date.now();
  let output: Uint8Array = new Uint8Array(0);
  let outputTensors: InferenceResult["outputTensors"] = [];
  let errorMessage = "";
  try {
    checkAssignment(task, nodeAddress, now());
    const model = deps.model(task.modelId);
    if (model === undefined) {
      throw new TaskRefusal(`model ${JSON.stringify(task.modelId)} is not hosted by this node`);
    }
    const inputs = decodeTaskInput(
      task.input,
      task.inputMediaType,
      task.inputTensors,
      model.descriptor,
    );
    const outputs = await model.forward(inputs, signal);
    const packed = packRawTensors(outputs);
    output = packed.bytes;
    outputTensors = packed.specs;
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    if (error instanceof TaskRefusal || error instanceof TensorError) {
      errorMessage = error.message;
    } else {
      deps.logger.warn(
        { err: error, requestId: task.requestId, modelId: task.modelId },
        "the model failed on a task",
      );
      errorMessage = "the model failed on this input";
    }
  }
  const succeeded = errorMessage === "";
  const completion = signComputeCompletion(
    create(ComputeCompletionSchema, {
      protocolVersion: NODE_PROTOCOL_VERSION,
      requestId: task.requestId,
      computeNodeAddress: nodeAddress,
      resultHash: sha256(output),
      completedAt: timestampFromDate(now()),
      computationTimeMs: BigInt(Math.max(0, Date.now() - started)),
    }),
    deps.keyPair,
  );
  return create(InferenceResultSchema, {
    protocolVersion: NODE_PROTOCOL_VERSION,
    requestId: task.requestId,
    modelId: task.modelId,
    outcome: succeeded ? InferenceOutcome.SUCCEEDED : InferenceOutcome.FAILED,
    output,
    outputMediaType: RAW_TENSORS_MEDIA_TYPE,
    outputTensors,
    errorMessage,
    computeCompletion: completion,
  });
}
