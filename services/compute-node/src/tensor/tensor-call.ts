/**
 * The checks a Forward or Backward call passes before a model runs, in the order the node makes
 * them (cheapest and most telling first, nothing computed for a refused call): the message is
 * there and speaks this protocol major version, its caller is the signer and its target this
 * node, its access token grants exactly this call, the model is hosted here, the tensors fit the
 * size limit, and they are well-formed inputs of the model. Imports nothing from Connect: the
 * service maps {@link TensorCallError} to status codes.
 */
import { create } from "@bufbuild/protobuf";
import { verifyAccessToken } from "@tessera/identity/access-token";
import type { HostedModel } from "@tessera/ml/model-host";
import {
  checkInputsAgainst,
  type RawTensor,
  TensorError,
  tensorsFromProto,
  tensorsToProto,
} from "@tessera/ml/tensors";
import { TensorSpecSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type TensorMessage,
  TensorMessageSchema,
} from "@tessera/proto/tessera/compute/v1/tensor_pb.js";
import { NODE_PROTOCOL_VERSION } from "../protocol-version.js";

/** Prefix of gradient tensors' names ("grad/<output>" in, "grad/<input>" out). */
export const GRADIENT_PREFIX = "grad/";

/** A refused tensor call, with the Connect code (by name) the service answers. */
export class TensorCallError extends Error {
  override readonly name = "TensorCallError";
  constructor(
    readonly code:
      | "invalid_argument"
      | "failed_precondition"
      | "permission_denied"
      | "not_found"
      | "resource_exhausted",
    message: string,
  ) {
    super(message);
  }
}

/** What the checks need of the node. */
export interface TensorCallPolicy {
  /** The node's address: the target every message must name. */
  readonly nodeAddress: string;
  /** Issuers whose access tokens the node accepts. */
  readonly trustedIssuers: readonly string[];
  /** Most tensor bytes (all buffers together) one request may carry. */
  readonly maxTensorBytes: number;
  /** The hosted model with this id, if any. */
  readonly model: (modelId: string) => HostedModel | undefined;
  /** The clock the token's expiry is checked against; default now. */
  readonly now?: (() => Date) | undefined;
}

/** A call that passed every check up to its tensors. */
export interface AdmittedCall {
  readonly message: TensorMessage;
  readonly model: HostedModel;
}

/**
 * Checks everything about a call but its tensors' contents.
 * @throws TensorCallError; AccessTokenError (unauthenticated / permission_denied) for the token.
 */
export function admitTensorCall(
  message: TensorMessage | undefined,
  signedCaller: string,
  policy: TensorCallPolicy,
): AdmittedCall {
  if (message === undefined) throw new TensorCallError("invalid_argument", "message is required");
  checkProtocolVersion(message.protocolVersion?.major);
  if (message.callerAddress !== signedCaller) {
    throw new TensorCallError(
      "permission_denied",
      `message.caller_address ${JSON.stringify(message.callerAddress)} is not the signed caller ${signedCaller}`,
    );
  }
  if (message.targetAddress !== policy.nodeAddress) {
    throw new TensorCallError(
      "permission_denied",
      `message.target_address ${JSON.stringify(message.targetAddress)} is not this node (${policy.nodeAddress})`,
    );
  }
  verifyAccessToken(message.accessToken, {
    nodeAddress: policy.nodeAddress,
    clientAddress: signedCaller,
    modelId: message.modelId,
    jobId: message.jobId,
    trustedIssuers: policy.trustedIssuers,
    ...(policy.now === undefined ? {} : { now: policy.now() }),
  });
  const model = policy.model(message.modelId);
  if (model === undefined) {
    throw new TensorCallError(
      "not_found",
      `model ${JSON.stringify(message.modelId)} is not served by this node`,
    );
  }
  const totalBytes = message.tensors.reduce((sum, tensor) => sum + tensor.buffer.length, 0);
  if (totalBytes > policy.maxTensorBytes) {
    throw new TensorCallError(
      "resource_exhausted",
      `the request's tensors hold ${totalBytes} bytes, above this node's limit of ${policy.maxTensorBytes} bytes (MAX_TENSOR_BYTES); move large data with a batch job and artifacts instead`,
    );
  }
  return { message, model };
}

/**
 * Checks a protocol major version (undefined: not sent).
 * @throws TensorCallError invalid_argument when missing, failed_precondition for another major.
 */
export function checkProtocolVersion(major: number | undefined): void {
  if (major === undefined) {
    throw new TensorCallError("invalid_argument", "protocol_version is required");
  }
  if (major !== NODE_PROTOCOL_VERSION.major) {
    throw new TensorCallError(
      "failed_precondition",
      `protocol major version ${major} is not supported; this node speaks ${NODE_PROTOCOL_VERSION.major}`,
    );
  }
}

/** A model's declared inputs as RawTensors, in declaration order. */
function orderedAs(model: HostedModel, tensors: readonly RawTensor[]): RawTensor[] {
  return model.descriptor.inputs.map(
    (spec) => tensors.find((tensor) => tensor.name === spec.name) as RawTensor,
  );
}

/**
 * The Forward inputs of an admitted call: well-formed and exactly the model's inputs (names,
 * dtypes, ranks, fixed dimensions), in the model's order.
 * @throws TensorError (invalid_argument) naming the tensor.
 */
export function forwardInputs(call: AdmittedCall): RawTensor[] {
  const tensors = tensorsFromProto(call.message.tensors);
  checkInputsAgainst(tensors, call.model.descriptor.inputs);
  return orderedAs(call.model, tensors);
}

/** What Backward runs on. */
export interface BackwardArguments {
  /** The model's inputs, in its order. */
  readonly inputs: RawTensor[];
  /** "grad/<output>" for every output of the model, in its order. */
  readonly outputGrads: RawTensor[];
  /** Names of the inputs whose gradients the caller wants. */
  readonly wanted: ReadonlySet<string>;
}

/**
 * The Backward arguments of an admitted call: the inputs as for Forward plus one
 * "grad/<output>" per model output of the output's dtype and rank, and at least one input with
 * requires_grad.
 * @throws TensorError (invalid_argument) naming the tensor; TensorCallError failed_precondition
 * when the model has no backward.
 */
export function backwardArguments(call: AdmittedCall): BackwardArguments {
  const { model } = call;
  const tensors = tensorsFromProto(call.message.tensors);
  const isGrad = (name: string) => name.startsWith(GRADIENT_PREFIX);
  const inputs = tensors.filter((tensor) => !isGrad(tensor.name));
  const grads = tensors.filter((tensor) => isGrad(tensor.name));
  checkInputsAgainst(inputs, model.descriptor.inputs);
  const gradSpecs = model.descriptor.outputs.map((spec) =>
    create(TensorSpecSchema, { ...spec, name: `${GRADIENT_PREFIX}${spec.name}` }),
  );
  checkInputsAgainst(grads, gradSpecs);
  if (!model.supportsBackward) {
    throw new TensorCallError(
      "failed_precondition",
      `model ${JSON.stringify(model.descriptor.modelId)} does not support Backward`,
    );
  }
  const wanted = new Set(
    call.message.tensors
      .filter((tensor) => tensor.requiresGrad && !isGrad(tensor.name))
      .map((tensor) => tensor.name),
  );
  if (wanted.size === 0) {
    throw new TensorError("no input has requires_grad set: there is no gradient to return");
  }
  return {
    inputs: orderedAs(model, inputs),
    outputGrads: gradSpecs.map(
      (spec) => grads.find((tensor) => tensor.name === spec.name) as RawTensor,
    ),
    wanted,
  };
}

/** The gradients Backward returns: "grad/<input>" of each wanted input, in the model's order. */
export function wantedGradients(
  gradients: readonly RawTensor[],
  wanted: ReadonlySet<string>,
): RawTensor[] {
  return gradients.filter(
    (tensor) =>
      tensor.name.startsWith(GRADIENT_PREFIX) &&
      wanted.has(tensor.name.slice(GRADIENT_PREFIX.length)),
  );
}

/** The node's answer to `request`: from the node to the caller, for the same model and job. */
export function replyMessage(
  request: TensorMessage,
  nodeAddress: string,
  tensors: readonly RawTensor[],
): TensorMessage {
  return create(TensorMessageSchema, {
    protocolVersion: NODE_PROTOCOL_VERSION,
    callerAddress: nodeAddress,
    targetAddress: request.callerAddress,
    modelId: request.modelId,
    jobId: request.jobId,
    tensors: tensorsToProto(tensors),
  });
}
