/**
 * What the gateway asks validators for a paid task: the route-and-price approval of a node
 * before the work (WorkDescription, bound to the input by its SHA-256) and, after it, the
 * evidence they may re-execute (input and result by value).
 */
import { create } from "@bufbuild/protobuf";
import type { PreprocessingValidation } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { InferenceResult } from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import {
  type ExecutionEvidence,
  ExecutionEvidenceSchema,
  WorkDescriptionSchema,
  WorkKind,
} from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import type { RegistryPort } from "@tessera/sdk/peer-clients";
import type { Task } from "../tasks/task.js";

/**
 * The registry's approval of `task` on node `nodeAddress`, routed by `gatewayAddress`.
 * @throws PeerError
 */
export function requestApproval(
  registry: RegistryPort,
  task: Task,
  nodeAddress: string,
  gatewayAddress: string,
): Promise<PreprocessingValidation> {
  return registry.requestPreprocessing(
    create(WorkDescriptionSchema, {
      kind: WorkKind.INFERENCE_TASK,
      requestId: task.requestId,
      modelId: task.modelId,
      subnetId: task.subnetId,
      clientAddress: task.clientAddress,
      maxPrice: task.maxPrice,
      gatewayAddress,
      computeNodeAddress: nodeAddress,
      inputHash: task.inputHash,
      inputSizeBytes: BigInt(task.input.length),
    }),
  );
}

/** The evidence of `task`'s run that produced `result`. */
export function executionEvidence(task: Task, result: InferenceResult): ExecutionEvidence {
  return create(ExecutionEvidenceSchema, {
    result: { case: "resultData", value: result.output },
    input: { case: "inputData", value: task.input },
    inputMediaType: task.inputMediaType,
    inputTensors: [...task.inputTensors],
    resultMediaType: result.outputMediaType,
  });
}
