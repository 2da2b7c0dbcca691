/**
 * Signed records with proof of work: messages such as NodeRecord and SynapseEndpoint that carry
 * `public_key`, `pow_nonce`, `pow_difficulty` and `signature` fields, per the contract in
 * tessera/common/v1/common.proto:
 *
 * - The signing bytes are the record's protobuf binary encoding with `signature` empty (so
 *   `pow_nonce` and `pow_difficulty` are inside them, and the signature covers the proof of work).
 * - Proof of work: SHA-256 over the signing bytes has at least `pow_difficulty` leading zero bits.
 * - Signature: ed25519 by `public_key` over the signing bytes.
 *
 * So a record is sealed in this order: fill every field, solve the proof of work, then sign.
 * Changing any field afterwards invalidates both.
 *
 * The bytes come from protobuf-es, which writes known fields in field-number order and then
 * unknown fields as received: a verifier that decodes a record and re-encodes it gets the same
 * bytes the signer hashed, including fields added by a newer schema (while new fields take
 * higher numbers than the ones the verifier knows). Records are never mutated; every function
 * returns a new object.
 */
import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { bytesEqual } from "./hash.js";
import { type KeyPair, verify } from "./keys.js";
import {
  MAX_POW_DIFFICULTY,
  type PowSolution,
  type SolveOptions,
  solveProofOfWorkAsync,
  verifyProofOfWork,
} from "./proof-of-work.js";

/** The fields a signed record has. */
export interface SignedRecordFields {
  publicKey: Uint8Array;
  powNonce: bigint;
  powDifficulty: number;
  signature: Uint8Array;
}

/** A message of `Desc` that has the signed-record fields. */
export type SignedRecordOf<Desc extends DescMessage> = MessageShape<Desc> & SignedRecordFields;

const EMPTY = new Uint8Array(0);

/** The signer's key pair does not match the record's public key. */
export class RecordKeyMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RecordKeyMismatchError";
  }
}

/** The binary encoding of `record` with `signature` empty: what is hashed and signed. */
export function recordSigningBytes<Desc extends DescMessage>(
  schema: Desc,
  record: SignedRecordOf<Desc>,
): Uint8Array {
  return toBinary(schema, record.signature.length === 0 ? record : { ...record, signature: EMPTY });
}

/**
 * A copy of `record` with `pow_difficulty` set to `difficulty`, `signature` cleared, and a
 * `pow_nonce` that meets the difficulty (searched from 0 unless `options.startNonce`), with the
 * solution's statistics. Yields to the event loop while it works; expect about 2^difficulty
 * encodings and hashes.
 * @throws RangeError for a difficulty outside 0..256; ProofOfWorkExhaustedError; the signal's
 * reason when aborted.
 */
export async function solveRecordPow<Desc extends DescMessage>(
  schema: Desc,
  record: SignedRecordOf<Desc>,
  difficulty: number,
  options: SolveOptions = {},
): Promise<{ record: SignedRecordOf<Desc>; solution: PowSolution }> {
  const candidate: SignedRecordOf<Desc> = {
    ...record,
    powDifficulty: difficulty,
    signature: EMPTY,
  };
  const solution = await solveProofOfWorkAsync(
    (nonce) => {
      candidate.powNonce = nonce;
      return toBinary(schema, candidate);
    },
    difficulty,
    options,
  );
  return {
    record: { ...record, powDifficulty: difficulty, powNonce: solution.nonce, signature: EMPTY },
    solution,
  };
}

/**
 * Whether `record`'s proof of work holds: `pow_difficulty` is at least `minDifficulty` and SHA-256
 * over its signing bytes has `pow_difficulty` leading zero bits.
 */
export function verifyRecordPow<Desc extends DescMessage>(
  schema: Desc,
  record: SignedRecordOf<Desc>,
  minDifficulty = 0,
): boolean {
  const difficulty = record.powDifficulty;
  if (difficulty < minDifficulty || difficulty > MAX_POW_DIFFICULTY) return false;
  return verifyProofOfWork(recordSigningBytes(schema, record), difficulty);
}

/**
 * A copy of `record` signed by `keyPair`.
 * @throws RecordKeyMismatchError when `record.publicKey` is not `keyPair.publicKey`.
 */
export function signRecord<Desc extends DescMessage>(
  schema: Desc,
  record: SignedRecordOf<Desc>,
  keyPair: KeyPair,
): SignedRecordOf<Desc> {
  if (!bytesEqual(record.publicKey, keyPair.publicKey)) {
    throw new RecordKeyMismatchError(
      `the record's public_key is not ${keyPair.address}'s key: set it before the proof of work`,
    );
  }
  return { ...record, signature: keyPair.sign(recordSigningBytes(schema, record)) };
}

/** Whether `record.signature` is `record.publicKey`'s signature over its signing bytes. */
export function verifyRecordSignature<Desc extends DescMessage>(
  schema: Desc,
  record: SignedRecordOf<Desc>,
): boolean {
  if (record.signature.length === 0) return false;
  return verify(record.publicKey, recordSigningBytes(schema, record), record.signature);
}
