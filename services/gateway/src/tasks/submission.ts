/**
 * Checks of a client's submission that need nothing but the request and the model: request id,
 * size, media type and tensors against the model's declared inputs, and the idempotency hash.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { sha256, toHex } from "@tessera/identity/hash";
import {
  decodeTaskInput,
  JSON_MEDIA_TYPE,
  RAW_TENSORS_MEDIA_TYPE,
  TensorError,
  unpackRawTensors,
} from "@tessera/ml/tensors";
import type { ModelDescriptor } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type SubmitInferenceTaskRequest,
  SubmitInferenceTaskRequestSchema,
} from "@tessera/proto/tessera/gateway/v1/gateway_client_service_pb.js";
import { GatewayError, invalidArgument } from "../errors.js";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** @throws GatewayError invalid_argument unless `id` is 1-128 characters of [A-Za-z0-9._:-]. */
export function checkRequestId(id: string, field = "request_id"): void {
  if (!REQUEST_ID.test(id)) {
    throw invalidArgument(field, "must be 1-128 characters of [A-Za-z0-9._:-]");
  }
}

/** SHA-256 (hex) of the request without its protocol version: what "the same body" means. */
export function submissionHash(request: SubmitInferenceTaskRequest): string {
  const body = create(SubmitInferenceTaskRequestSchema, { ...request, protocolVersion: undefined });
  return toHex(sha256(toBinary(SubmitInferenceTaskRequestSchema, body)));
}

/** @throws GatewayError resource_exhausted above `maxInputBytes`. */
export function checkInputSize(input: Uint8Array, maxInputBytes: number): void {
  if (input.length > maxInputBytes) {
    throw new GatewayError(
      "resource_exhausted",
      `input is ${input.length} bytes, above this gateway's limit of ${maxInputBytes} (MAX_INPUT_BYTES)`,
    );
  }
}

/**
 * Checks the input decodes as the model's inputs: raw tensors whose sizes add up and match the
 * declared names, dtypes and fixed dimensions, or JSON that converts to them.
 * @throws GatewayError invalid_argument naming the problem.
 */
export function checkTaskInput(request: SubmitInferenceTaskRequest, model: ModelDescriptor): void {
  const media = (request.inputMediaType.split(";")[0] ?? "").trim().toLowerCase();
  if (media !== RAW_TENSORS_MEDIA_TYPE && media !== JSON_MEDIA_TYPE) {
    throw invalidArgument(
      "input_media_type",
      `"${request.inputMediaType}" is not supported: use ${RAW_TENSORS_MEDIA_TYPE} or ${JSON_MEDIA_TYPE}`,
    );
  }
  if (media === JSON_MEDIA_TYPE && request.inputTensors.length > 0) {
    throw invalidArgument("input_tensors", "must be empty for JSON input");
  }
  try {
    if (model.inputs.length > 0) {
      decodeTaskInput(request.input, request.inputMediaType, request.inputTensors, model);
    } else if (media === RAW_TENSORS_MEDIA_TYPE) {
      // A model that declares no inputs: the tensors must still describe the bytes exactly.
      unpackRawTensors(request.input, request.inputTensors);
    }
  } catch (error) {
    if (error instanceof TensorError) {
      throw new GatewayError(
        error.code === "resource_exhausted" ? "resource_exhausted" : "invalid_argument",
        `input: ${error.message}`,
      );
    }
    throw error;
  }
}
