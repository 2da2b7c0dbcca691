/**
 * The registry's own signed NodeRecord (NODE_TYPE_REGISTRY, endpoint = its public URL). Put into
 * its own directory at start, it travels with gossip, so peers learn the registry's address for
 * its URL and accept its Gossip calls.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { KeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import {
  type NodeRecord,
  NodeRecordSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { PROTOCOL_VERSION } from "../validation/protocol-version.js";

/** Options of {@link sealRegistryRecord}. */
export interface RegistryRecordOptions {
  readonly keyPair: KeyPair;
  /** The URL peers reach this registry at (PUBLIC_URL). */
  readonly publicUrl: string;
  /** Proof-of-work difficulty; at least the peers' minimum. */
  readonly powDifficulty: number;
  /** Software version; default "0.1.0". */
  readonly softwareVersion?: string | undefined;
  /** Wall clock; default `() => new Date()`. The record's sequence is its issue time in ms. */
  readonly clock?: (() => Date) | undefined;
  /** Stops the proof of work. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * A sealed NODE_TYPE_REGISTRY record for this registry. Its `sequence` is the issue time in
 * milliseconds, so a restarted registry's new record wins over the old one everywhere.
 */
export function sealRegistryRecord(options: RegistryRecordOptions): Promise<NodeRecord> {
  const now = (options.clock ?? (() => new Date()))();
  const record = create(NodeRecordSchema, {
    protocolVersion: PROTOCOL_VERSION,
    address: options.keyPair.address,
    publicKey: options.keyPair.publicKey,
    nodeType: NodeType.REGISTRY,
    name: "registry",
    softwareVersion: options.softwareVersion ?? "0.1.0",
    endpoint: { url: options.publicUrl },
    sequence: BigInt(now.getTime()),
    issuedAt: timestampFromDate(now),
  });
  return sealNodeRecord(record, options.keyPair, options.powDifficulty, {
    signal: options.signal,
  });
}
