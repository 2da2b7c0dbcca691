/**
 * What validation reads from the network, as ports: the registry role implements them over its
 * own directory, a validator over the registry's read-only RPCs. Both see the same entries, so
 * both reach the same terms.
 */
import type {
  NodeEntry,
  SubnetMetadata,
  ValidatorInfo,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";

/** The active validators and how many of them an approval needs. */
export interface ValidatorSet {
  /** Active validators, in a stable order (by address). */
  readonly validators: readonly ValidatorInfo[];
  /** M: distinct signatures an approval needs. */
  readonly quorum: number;
}

/** Reads shared by the registry role and the validator role. */
export interface ValidationSources {
  /** A node's directory entry, or undefined when the node is unknown. */
  getNode(address: string): Promise<NodeEntry | undefined>;
  /**
   * A subnet, or undefined when unknown. The default subnet 0 may come back undefined: the
   * policy's default split then applies and any model is allowed.
   */
  getSubnet(subnetId: bigint): Promise<SubnetMetadata | undefined>;
  /** The active validator set. */
  getValidatorSet(): Promise<ValidatorSet>;
}

/** What a validator's answer, or silence, does to its reputation. */
export type ValidatorEvent = "ok" | "timeout" | "invalid_signature";

/** A verdict on a node's finished work, recorded in its standing. */
export type NodeVerdictEvent = "validation_passed" | "validation_failed";

/** What the registry role needs besides the shared reads. */
export interface RegistryValidationSources extends ValidationSources {
  /**
   * Compute nodes that may host `modelId` in `subnetId`, online and not banned, best first
   * (the directory's discovery order). Each is checked again before it is routed to.
   */
  findComputeNodes(query: { modelId: string; subnetId: bigint }): Promise<readonly NodeEntry[]>;
  /** Records a validator's answer or silence (reputation). */
  reportValidatorEvent(address: string, event: ValidatorEvent): Promise<void>;
  /**
   * Records the completion verdict for a node; `eventId` makes it idempotent
   * ("completion:<request id>").
   */
  reportNodeVerdict(
    address: string,
    event: NodeVerdictEvent,
    detail: { eventId: string; requestId: string; detail: string },
  ): Promise<void>;
  /**
   * Whether `caller` may ask for validations: a gateway, job server or compute node known to the
   * registry.
   */
  isKnownRouter(caller: string): Promise<boolean>;
}
