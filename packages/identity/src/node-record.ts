/**
 * NodeRecord (tessera/common/v1/common.proto): a node's self-description, sealed with a proof of
 * work and its key's signature (see ./signed-record.ts for the exact rule). `address` must
 * derive from `public_key`.
 *
 * Seal a record with {@link sealNodeRecord}, or step by step: set `address` and `public_key`,
 * {@link solveNodeRecordPow}, then {@link signNodeRecord}. Check one with
 * {@link findNodeRecordProblem} (a reason to put in an error) or the boolean verifiers.
 */
import { type NodeRecord, NodeRecordSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { addressFromPublicKey, PUBLIC_KEY_BYTES } from "./address.js";
import type { KeyPair } from "./keys.js";
import type { SolveOptions } from "./proof-of-work.js";
import {
  RecordKeyMismatchError,
  signRecord,
  solveRecordPow,
  verifyRecordPow,
  verifyRecordSignature,
} from "./signed-record.js";

/**
 * A copy of `record` with `pow_difficulty` = `difficulty`, a `pow_nonce` that meets it, and an
 * empty `signature` (sign it next). Works asynchronously; about 2^difficulty attempts.
 */
export async function solveNodeRecordPow(
  record: NodeRecord,
  difficulty: number,
  options: SolveOptions = {},
): Promise<NodeRecord> {
  return (await solveRecordPow(NodeRecordSchema, record, difficulty, options)).record;
}

/** Whether the record's proof of work holds at `pow_difficulty` >= `minDifficulty` (default 0). */
export function verifyNodeRecordPow(record: NodeRecord, minDifficulty = 0): boolean {
  return verifyRecordPow(NodeRecordSchema, record, minDifficulty);
}

/**
 * A copy of `record` signed by `keyPair`.
 * @throws RecordKeyMismatchError when `public_key` or `address` is not the key pair's.
 */
export function signNodeRecord(record: NodeRecord, keyPair: KeyPair): NodeRecord {
  if (record.address !== keyPair.address) {
    throw new RecordKeyMismatchError(
      `the record's address is not ${keyPair.address}: set it before the proof of work`,
    );
  }
  return signRecord(NodeRecordSchema, record, keyPair);
}

/**
 * Whether `address` derives from `public_key` and `signature` is that key's signature over the
 * record. Does not check the proof of work (see {@link verifyNodeRecordPow}).
 */
export function verifyNodeRecord(record: NodeRecord): boolean {
  return addressMatches(record) && verifyRecordSignature(NodeRecordSchema, record);
}

/**
 * `record` with `address` and `public_key` of `keyPair`, a proof of work at `difficulty`, and
 * its signature: ready to publish.
 */
export async function sealNodeRecord(
  record: NodeRecord,
  keyPair: KeyPair,
  difficulty: number,
  options: SolveOptions = {},
): Promise<NodeRecord> {
  const keyed = { ...record, address: keyPair.address, publicKey: keyPair.publicKey };
  return signNodeRecord(await solveNodeRecordPow(keyed, difficulty, options), keyPair);
}

/** Options of {@link findNodeRecordProblem}. */
export interface NodeRecordCheckOptions {
  /** Least proof-of-work difficulty accepted; default 0. */
  readonly minPowDifficulty?: number | undefined;
}

/**
 * Why `record` is not valid, in words fit for an error message, or undefined when its key,
 * address, proof of work and signature all hold.
 */
export function findNodeRecordProblem(
  record: NodeRecord,
  options: NodeRecordCheckOptions = {},
): string | undefined {
  const minDifficulty = options.minPowDifficulty ?? 0;
  if (record.publicKey.length !== PUBLIC_KEY_BYTES) {
    return `public_key must be ${PUBLIC_KEY_BYTES} bytes, got ${record.publicKey.length}`;
  }
  if (!addressMatches(record)) return "address does not derive from public_key";
  if (record.powDifficulty < minDifficulty) {
    return `proof of work difficulty ${record.powDifficulty} is below the required ${minDifficulty}`;
  }
  if (!verifyRecordPow(NodeRecordSchema, record, minDifficulty)) {
    return `proof of work does not meet its difficulty ${record.powDifficulty}`;
  }
  if (record.signature.length === 0) return "signature is missing";
  if (!verifyRecordSignature(NodeRecordSchema, record)) {
    return "signature does not verify against public_key";
  }
  return undefined;
}

function addressMatches(record: NodeRecord): boolean {
  return (
    record.publicKey.length === PUBLIC_KEY_BYTES &&
    addressFromPublicKey(record.publicKey) === record.address
  );
}
