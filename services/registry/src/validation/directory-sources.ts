/**
 * The registry role's {@link RegistryValidationSources} over its own directory and subnet book.
 */
import { NodeType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  NodeEventKind,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import type { Directory } from "../directory/directory.js";
import type { Subnets } from "../subnets/subnets.js";
import type { RegistryValidationSources } from "./sources.js";

/** Options of {@link createDirectorySources}. */
export interface DirectorySourcesOptions {
  readonly directory: Pick<
    Directory,
    "getEntry" | "findNodes" | "listValidators" | "reportValidatorEvent" | "reportEvent"
  >;
  readonly subnets: Pick<Subnets, "getSubnet" | "isSubnetGateway">;
  /** M: signatures an approval needs (QUORUM). */
  readonly quorum: number;
  /**
   * The registry's own address: it reports completion verdicts, so the directory must list it
   * among its trusted reporters.
   */
  readonly registryAddress: string;
  /** Further callers allowed to ask for validations (job servers), besides known nodes. */
  readonly trustedRouters?: readonly string[] | undefined;
}

const ROUTER_TYPES = new Set([NodeType.GATEWAY, NodeType.JOB_SERVER, NodeType.COMPUTE]);

/**
 * Sources reading the directory: nodes and subnets as stored, the ACTIVE validators ordered by
 * address, compute nodes by the directory's discovery order; reputation and verdicts written back.
 * A caller may ask for validations when it is in `trustedRouters`, runs a subnet, or is a
 * registered gateway, job server or compute node.
 */
export function createDirectorySources(
  options: DirectorySourcesOptions,
): RegistryValidationSources {
  const { directory, subnets, quorum, registryAddress } = options;
  if (!Number.isInteger(quorum) || quorum < 1) {
    throw new RangeError(`quorum must be a positive integer, got ${quorum}`);
  }
  const trusted = new Set(options.trustedRouters ?? []);
  return {
    getNode: (address) => directory.getEntry(address),
    getSubnet: (subnetId) => subnets.getSubnet(subnetId),
    async getValidatorSet() {
      const validators = await directory.listValidators({ status: ValidatorStatus.ACTIVE });
      return { validators, quorum };
    },
    findComputeNodes: ({ modelId, subnetId }) =>
      directory.findNodes({ nodeType: NodeType.COMPUTE, modelId, subnetId, onlineOnly: true }),
    async reportValidatorEvent(address, event) {
      await directory.reportValidatorEvent(address, event);
    },
    async reportNodeVerdict(address, event, detail) {
      await directory.reportEvent(address, {
        eventId: detail.eventId,
        reporter: registryAddress,
        kind:
          event === "validation_passed"
            ? NodeEventKind.VALIDATION_PASSED
            : NodeEventKind.VALIDATION_FAILED,
        requestId: detail.requestId,
        detail: detail.detail.slice(0, 512),
      });
    },
    async isKnownRouter(caller) {
      if (trusted.has(caller)) return true;
      const entry = await directory.getEntry(caller);
      if (entry?.record !== undefined && ROUTER_TYPES.has(entry.record.nodeType)) return true;
      return subnets.isSubnetGateway(caller);
    },
  };
}
