/**
 * TensorService handlers: proto in, the checks of ./tensor-call.ts, the hosted model (batched with
 * concurrent calls by the model host), proto out; one error mapping for the service.
 */
import { create, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { requireCaller, requiresSignatureByDefault } from "@tessera/auth";
import { AccessTokenError } from "@tessera/identity/access-token";
import { BackwardUnsupportedError } from "@tessera/ml/model-host";
import { TensorError } from "@tessera/ml/tensors";
import type { NodeRecord } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { SynapseEndpoint } from "@tessera/proto/tessera/compute/v1/synapse_endpoint_pb.js";
import {
  BackwardResponseSchema,
  DescribeEndpointResponseSchema,
  ForwardResponseSchema,
  TensorService,
} from "@tessera/proto/tessera/compute/v1/tensor_service_pb.js";
import type { Logger } from "@tessera/runtime";
import {
  admitTensorCall,
  backwardArguments,
  checkProtocolVersion,
  forwardInputs,
  replyMessage,
  TensorCallError,
  type TensorCallPolicy,
  wantedGradients,
} from "./tensor-call.js";

/** What {@link createTensorService} needs. */
export interface TensorServiceDeps extends TensorCallPolicy {
  /** The node's sealed record (DescribeEndpoint). */
  readonly record: NodeRecord;
  /** One sealed SynapseEndpoint per hosted model. */
  readonly synapses: readonly SynapseEndpoint[];
  readonly logger: Logger;
}

const CODES = {
  invalid_argument: Code.InvalidArgument,
  failed_precondition: Code.FailedPrecondition,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  resource_exhausted: Code.ResourceExhausted,
  unauthenticated: Code.Unauthenticated,
} as const;

/**
 * The Connect error of a failed call: refusals keep their message and code; a model failure the
 * node did not foresee is `internal`, logged with its cause and never sent to the caller.
 */
function toConnectError(
  error: unknown,
  logger: Logger,
  method: string,
  signal: AbortSignal | undefined,
): ConnectError {
  if (error instanceof ConnectError) return error;
  // The caller went away or the deadline passed: the runtime's reason says which.
  if (signal?.aborted) return ConnectError.from(signal.reason);
  if (
    error instanceof TensorCallError ||
    error instanceof TensorError ||
    error instanceof AccessTokenError ||
    error instanceof BackwardUnsupportedError
  ) {
    return new ConnectError(error.message, CODES[error.code]);
  }
  logger.error({ err: error, method }, "tensor call failed");
  return new ConnectError(
    "the model failed on this input",
    Code.Internal,
    undefined,
    undefined,
    error,
  );
}

/** Microseconds since `startNs` (process.hrtime.bigint()). */
function elapsedUs(startNs: bigint): bigint {
  return (process.hrtime.bigint() - startNs) / 1000n;
}

/**
 * Which TensorService calls must be signed: Forward and Backward run models for a caller and
 * must be; DescribeEndpoint only reads the node's public, signed self-description, so anyone may
 * ask without a signature or token (its proto carries no NO_SIDE_EFFECTS marking, so the default
 * rule alone would demand one). Other services keep the default rule.
 */
export function tensorServiceRequiresSignature(method: DescMethod): boolean {
  if (method === TensorService.method.describeEndpoint) return false;
  return requiresSignatureByDefault(method);
}

/** The TensorService of a compute node. */
export function createTensorService(deps: TensorServiceDeps): ServiceImpl<typeof TensorService> {
  const log = deps.logger.child({ component: "tensor-service" });
  const nodeAddress = deps.nodeAddress;

  async function guarded<T>(
    method: string,
    signal: AbortSignal | undefined,
    run: () => Promise<T>,
  ): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw toConnectError(error, log, method, signal);
    }
  }

  return {
    forward(request, ctx: HandlerContext) {
      return guarded("Forward", ctx.signal, async () => {
        const call = admitTensorCall(request.message, requireCaller(ctx), deps);
        const inputs = forwardInputs(call);
        const started = process.hrtime.bigint();
        const outputs = await call.model.forward(inputs, ctx.signal);
        const processTimeUs = elapsedUs(started);
        return create(ForwardResponseSchema, {
          message: replyMessage(call.message, nodeAddress, outputs),
          processTimeUs,
        });
      });
    },

    backward(request, ctx: HandlerContext) {
      return guarded("Backward", ctx.signal, async () => {
        const call = admitTensorCall(request.message, requireCaller(ctx), deps);
        const { inputs, outputGrads, wanted } = backwardArguments(call);
        const started = process.hrtime.bigint();
        const gradients = await call.model.backward(inputs, outputGrads, ctx.signal);
        const processTimeUs = elapsedUs(started);
        return create(BackwardResponseSchema, {
          message: replyMessage(call.message, nodeAddress, wantedGradients(gradients, wanted)),
          processTimeUs,
        });
      });
    },

    describeEndpoint(request) {
      return guarded("DescribeEndpoint", undefined, async () => {
        checkProtocolVersion(request.protocolVersion?.major);
        const synapses =
          request.modelId === ""
            ? deps.synapses
            : deps.synapses.filter((synapse) => synapse.model?.modelId === request.modelId);
        if (request.modelId !== "" && synapses.length === 0) {
          throw new TensorCallError(
            "not_found",
            `model ${JSON.stringify(request.modelId)} is not served by this node`,
          );
        }
        return create(DescribeEndpointResponseSchema, {
          node: deps.record,
          synapses: [...synapses],
        });
      });
    },
  };
}
