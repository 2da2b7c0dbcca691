/**
 * Test-only fixtures of validation: keys, sealed node records, entries, terms and an in-memory
 * {@link ValidationSources} for unit tests (integration tests use the real directory).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import { signComputeCompletion } from "@tessera/identity/validation-bundle";
import {
  type ComputeCompletion,
  ComputeCompletionSchema,
  type NodeRecord,
  NodeRecordSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type NodeEntry,
  NodeEntrySchema,
  type SubnetMetadata,
  type ValidatorInfo,
  ValidatorInfoSchema,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import {
  type WorkDescription,
  WorkDescriptionSchema,
  WorkKind,
} from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import { PROTOCOL_VERSION } from "./protocol-version.js";
import type { ValidationSources } from "./sources.js";

export const MODEL_ID = "mnist-mlp";
export const NOW = new Date("2030-01-01T00:00:00Z");

/** A sealed compute-node record hosting {@link MODEL_ID} at 3,600,000 base units per hour. */
export function computeRecord(
  keyPair: KeyPair,
  fields: Partial<
    Pick<NodeRecord, "pricePerHour" | "subnetId" | "sequence" | "payoutAddress">
  > = {},
  difficulty = 0,
): Promise<NodeRecord> {
  return sealNodeRecord(
    create(NodeRecordSchema, {
      protocolVersion: PROTOCOL_VERSION,
      nodeType: NodeType.COMPUTE,
      name: "cpu-box",
      softwareVersion: "0.1.0",
      endpoint: { host: "10.0.0.7", port: 7000 },
      runtimes: ["onnxruntime"],
      capabilities: ["inference"],
      models: [{ modelId: MODEL_ID, name: "MNIST MLP" }],
      pricePerHour: "3600000",
      sequence: 1n,
      issuedAt: timestampFromDate(NOW),
      ...fields,
    }),
    keyPair,
    difficulty,
  );
}

/** An online, unbanned directory entry for `record`. */
export function entryOf(
  record: NodeRecord,
  standing: { online?: boolean; bannedUntil?: Date } = {},
): NodeEntry {
  return create(NodeEntrySchema, {
    protocolVersion: PROTOCOL_VERSION,
    record,
    standing: {
      reputation: 0.5,
      online: standing.online ?? true,
      ...(standing.bannedUntil ? { bannedUntil: timestampFromDate(standing.bannedUntil) } : {}),
    },
  });
}

/** An active validator with `keyPair` reachable at `url`. */
export function validatorInfo(keyPair: KeyPair, url = "http://127.0.0.1:1"): ValidatorInfo {
  return create(ValidatorInfoSchema, {
    protocolVersion: PROTOCOL_VERSION,
    address: keyPair.address,
    publicKey: keyPair.publicKey,
    endpoint: { url },
    stakeAmount: "1000",
    reputation: 0.5,
    status: ValidatorStatus.ACTIVE,
  });
}

/** An inference task for {@link MODEL_ID} by `gateway` for `client`. */
export function inferenceWork(
  gateway: KeyPair,
  client: KeyPair,
  fields: Partial<
    Pick<WorkDescription, "requestId" | "maxPrice" | "computeNodeAddress" | "subnetId">
  > = {},
): WorkDescription {
  return create(WorkDescriptionSchema, {
    kind: WorkKind.INFERENCE_TASK,
    requestId: "task-1",
    modelId: MODEL_ID,
    clientAddress: client.address,
    gatewayAddress: gateway.address,
    ...fields,
  });
}

/** `node`'s signed completion of `requestId` with `resultHash`, finished at `completedAt`. */
export function signedCompletion(
  node: KeyPair,
  requestId: string,
  resultHash: Uint8Array,
  completedAt: Date = NOW,
): ComputeCompletion {
  return signComputeCompletion(
    create(ComputeCompletionSchema, {
      protocolVersion: PROTOCOL_VERSION,
      requestId,
      computeNodeAddress: node.address,
      resultHash,
      completedAt: timestampFromDate(completedAt),
      computationTimeMs: 12n,
    }),
    node,
  );
}

/** In-memory sources over fixed maps; mutate the maps to change what the signer sees. */
export interface MemorySources extends ValidationSources {
  readonly nodes: Map<string, NodeEntry>;
  readonly subnets: Map<bigint, SubnetMetadata>;
  validators: ValidatorInfo[];
  quorum: number;
}

/** {@link MemorySources} holding `nodes` and `validators`, quorum `quorum`. */
export function memorySources(
  nodes: readonly NodeEntry[],
  validators: readonly ValidatorInfo[],
  quorum: number,
): MemorySources {
  const sources: MemorySources = {
    nodes: new Map(nodes.map((n) => [n.record?.address ?? "", n])),
    subnets: new Map(),
    validators: [...validators],
    quorum,
    getNode: async (address) => sources.nodes.get(address),
    getSubnet: async (id) => sources.subnets.get(id),
    getValidatorSet: async () => ({ validators: sources.validators, quorum: sources.quorum }),
  };
  return sources;
}

/** `count` fresh key pairs sorted by address. */
export function keyPairs(count: number): KeyPair[] {
  return Array.from({ length: count }, generateKeyPair).sort((a, b) =>
    a.address < b.address ? -1 : 1,
  );
}
