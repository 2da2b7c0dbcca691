/**
 * The node's signed description of each model it serves over TensorService
 * (tessera.compute.v1.SynapseEndpoint): sealed once at start with a proof of work and the node's
 * signature, so a caller can check what it talks to without asking the registry.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { KeyPair } from "@tessera/identity/keys";
import { signRecord, solveRecordPow } from "@tessera/identity/signed-record";
import type { Endpoint, ModelDescriptor } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type SynapseEndpoint,
  SynapseEndpointSchema,
} from "@tessera/proto/tessera/compute/v1/synapse_endpoint_pb.js";
import { NODE_PROTOCOL_VERSION } from "../protocol-version.js";

/** Options of {@link sealSynapseEndpoints}. */
export interface SynapseSealOptions {
  readonly keyPair: KeyPair;
  /** The published descriptors of the hosted models. */
  readonly models: readonly ModelDescriptor[];
  /** Where TensorService answers; undefined behind NAT. */
  readonly endpoint: Endpoint | undefined;
  /** Leading zero bits of each record's proof of work (the node record's difficulty). */
  readonly powDifficulty: number;
  /** Issue time, also the records' sequence (ms); default now. */
  readonly issuedAt?: Date | undefined;
  readonly signal?: AbortSignal | undefined;
}

/**
 * One sealed SynapseEndpoint per model, in the models' order. `sequence` is the issue time in
 * milliseconds, so a restarted node's records replace the old ones.
 */
export async function sealSynapseEndpoints(
  options: SynapseSealOptions,
): Promise<SynapseEndpoint[]> {
  const { keyPair } = options;
  const issuedAt = options.issuedAt ?? new Date();
  const sealed: SynapseEndpoint[] = [];
  for (const model of options.models) {
    const record = create(SynapseEndpointSchema, {
      protocolVersion: NODE_PROTOCOL_VERSION,
      nodeAddress: keyPair.address,
      publicKey: keyPair.publicKey,
      model,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      sequence: BigInt(issuedAt.getTime()),
      issuedAt: timestampFromDate(issuedAt),
    });
    const solved = await solveRecordPow(SynapseEndpointSchema, record, options.powDifficulty, {
      signal: options.signal,
    });
    sealed.push(signRecord(SynapseEndpointSchema, solved.record, keyPair));
  }
  return sealed;
}
