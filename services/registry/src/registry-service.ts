/**
 * RegistryService handlers: proto requests to directory and subnet-book calls and back. The
 * domain decides; this file checks the protocol version, takes the verified caller from the
 * signed-request interceptor (@tessera/auth), and maps domain errors with {@link toConnectError}.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { requireCaller } from "@tessera/auth";
import {
  type DiscoverNodesResponse,
  DiscoverNodesResponseSchema,
  type RegistryService,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import type { Directory } from "./directory/directory.js";
import { DirectoryError, type DirectoryErrorKind } from "./directory/errors.js";
import { checkProtocolVersion } from "./directory/protocol-version.js";
import type { Subnets } from "./subnets/subnets.js";

/** What {@link createRegistryService} needs. */
export interface RegistryServiceDeps {
  /** The node directory and validator set. */
  readonly directory: Directory;
  /** The subnet book. */
  readonly subnets: Subnets;
  /**
   * M: how many distinct active validators' signatures an approval needs, as ListValidators
   * reports it (the same quorum the ValidationService fans out for).
   */
  readonly requiredSignatures: number;
}

const CODE_OF: Readonly<Record<DirectoryErrorKind, Code>> = {
  invalid: Code.InvalidArgument,
  bad_signature: Code.Unauthenticated,
  not_found: Code.NotFound,
  conflict: Code.AlreadyExists,
  stale: Code.FailedPrecondition,
  failed_precondition: Code.FailedPrecondition,
  banned: Code.PermissionDenied,
  permission_denied: Code.PermissionDenied,
  unavailable: Code.Unavailable,
};

/**
 * The one mapping of errors to Connect codes for the registry's handlers: a DirectoryError to its
 * kind's code with its message, a ConnectError unchanged, anything else `internal` with a
 * generic message and the original as `cause` (the runtime logs it; the client never sees it).
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof DirectoryError) return new ConnectError(error.message, CODE_OF[error.kind]);
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/** Runs a unary handler body, mapping whatever it throws. */
async function translate<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw toConnectError(error);
  }
}

/**
 * The full RegistryService. Every state-changing RPC reads its caller from the verifying
 * interceptor (`requireCaller`: unauthenticated when the call was not signed), so the server must
 * install @tessera/auth's createVerifyingInterceptor.
 */
export function createRegistryService(
  deps: RegistryServiceDeps,
): ServiceImpl<typeof RegistryService> {
  const { directory, subnets } = deps;

  return {
    registerNode: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "RegisterNode");
        if (req.record === undefined) throw invalid("record is required");
        const node = await directory.registerNode(req.record, caller);
        return { node, heartbeatIntervalMs: directory.heartbeatIntervalMs };
      }),

    updateNodeHeartbeat: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "UpdateNodeHeartbeat");
        const standing = await directory.heartbeat(req.nodeAddress, req.load, caller);
        return { standing, heartbeatIntervalMs: directory.heartbeatIntervalMs };
      }),

    deregisterNode: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "DeregisterNode");
        const removedAt = await directory.deregister(req.nodeAddress, caller, req.reason);
        return { deregisteredAt: timestampFromDate(removedAt) };
      }),

    async *discoverNodes(req, ctx: HandlerContext): AsyncIterable<DiscoverNodesResponse> {
      let entries: Awaited<ReturnType<Directory["findNodes"]>>;
      try {
        checkProtocolVersion(req.protocolVersion, "DiscoverNodes");
        if (!(req.minReputation >= 0 && req.minReputation <= 1)) {
          throw invalid("min_reputation must be in [0, 1]");
        }
        entries = await directory.findNodes({
          nodeType: req.nodeType,
          deviceType: req.deviceType,
          minDeviceMemoryBytes: req.minDeviceMemoryBytes,
          runtime: req.runtime,
          modelId: req.modelId,
          subnetId: req.subnetId,
          onlineOnly: req.onlineOnly,
          minReputation: req.minReputation,
          capability: req.capability,
          maxResults: req.maxResults,
        });
      } catch (error) {
        throw toConnectError(error);
      }
      for (const node of entries) {
        if (ctx.signal.aborted) return;
        yield create(DiscoverNodesResponseSchema, { node });
      }
    },

    getNode: (req) =>
      translate(async () => {
        checkProtocolVersion(req.protocolVersion, "GetNode");
        const node = await directory.getEntry(req.nodeAddress);
        if (node === undefined) throw notFound(`node ${req.nodeAddress} is not registered`);
        return { node };
      }),

    reportNodeEvent: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "ReportNodeEvent");
        const standing = await directory.reportEvent(req.nodeAddress, {
          eventId: req.eventId,
          reporter: caller,
          kind: req.kind,
          requestId: req.requestId,
          computeTimeMs: req.computeTimeMs,
          detail: req.detail,
        });
        return { standing };
      }),

    estimateSubnetFee: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "EstimateSubnetFee");
        const quote = await subnets.estimateFee(req.gatewayAddress, req.models, caller);
        return { quote };
      }),

    createSubnet: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "CreateSubnet");
        const subnet = await subnets.createSubnet(
          {
            gatewayAddress: req.gatewayAddress,
            models: req.models,
            feeQuoteId: req.feeQuoteId,
            paymentTransferId: req.paymentTransferId,
            configHash: req.configHash,
            name: req.name,
            paymentSplit: req.paymentSplit,
            free: req.free,
          },
          caller,
        );
        return { subnet };
      }),

    getSubnet: (req) =>
      translate(async () => {
        checkProtocolVersion(req.protocolVersion, "GetSubnet");
        const subnet = await subnets.getSubnet(req.subnetId);
        if (subnet === undefined) throw notFound(`subnet ${req.subnetId} does not exist`);
        return { subnet };
      }),

    listSubnets: (req) =>
      translate(async () => {
        checkProtocolVersion(req.protocolVersion, "ListSubnets");
        return subnets.listSubnets({
          status: req.status,
          gatewayAddress: req.gatewayAddress,
          modelId: req.modelId,
          pageSize: req.pageSize,
          pageToken: req.pageToken,
        });
      }),

    registerValidator: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "RegisterValidator");
        if (req.record === undefined) throw invalid("record is required");
        const validator = await directory.registerValidator(
          req.record,
          req.stakeAmount,
          req.stakeId,
          caller,
        );
        return { validator };
      }),

    unregisterValidator: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "UnregisterValidator");
        const validator = await directory.unregisterValidator(
          req.validatorAddress,
          caller,
          req.reason,
        );
        return { validator };
      }),

    getValidatorInfo: (req) =>
      translate(async () => {
        checkProtocolVersion(req.protocolVersion, "GetValidatorInfo");
        const validator = await directory.getValidator(req.validatorAddress);
        if (validator === undefined) {
          throw notFound(`validator ${req.validatorAddress} is not registered`);
        }
        return { validator };
      }),

    listValidators: (req) =>
      translate(async () => {
        checkProtocolVersion(req.protocolVersion, "ListValidators");
        const page = await directory.listValidatorPage({
          status: req.status,
          pageSize: req.pageSize,
          pageToken: req.pageToken,
        });
        return { ...page, requiredSignatures: deps.requiredSignatures };
      }),
  };
}

function invalid(message: string): DirectoryError {
  return new DirectoryError("invalid", message);
}

function notFound(message: string): DirectoryError {
  return new DirectoryError("not_found", message);
}
