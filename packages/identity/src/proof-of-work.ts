/**
 * Proof of work: find a nonce such that SHA-256 over bytes that include it has at least
 * `difficulty` leading zero bits (Bittensor's synapse `proof_of_work`). Each extra bit doubles
 * the expected work: about 2^difficulty hashes.
 */
import { sha256 } from "./hash.js";

/** Largest difficulty: every bit of a SHA-256 digest. */
export const MAX_POW_DIFFICULTY = 256;
/** Largest nonce: 2^64 - 1 (proto `uint64`). */
export const MAX_POW_NONCE = 2n ** 64n - 1n;

/** Builds the bytes to hash for one candidate nonce. */
export type PowBytesFn = (nonce: bigint) => Uint8Array;

/** Options of {@link solveProofOfWork} and {@link solveProofOfWorkAsync}. */
export interface SolveOptions {
  /** First nonce tried; default 0. */
  readonly startNonce?: bigint | undefined;
  /** Candidates tried before giving up with {@link ProofOfWorkExhaustedError}; default 2^40. */
  readonly maxAttempts?: number | undefined;
  /** Async only: stops with the signal's reason when aborted. */
  readonly signal?: AbortSignal | undefined;
  /** Async only: candidates between yields to the event loop; default 4096. */
  readonly attemptsPerYield?: number | undefined;
}

/** A nonce that meets the difficulty, and its hash. */
export interface PowSolution {
  readonly nonce: bigint;
  readonly hash: Uint8Array;
  /** Candidates tried, including the solution. */
  readonly attempts: number;
}

/** The attempt budget ran out (or the nonce space did) before a solution was found. */
export class ProofOfWorkExhaustedError extends Error {
  constructor(difficulty: number, attempts: number) {
    super(`no proof of work at difficulty ${difficulty} within ${attempts} attempts`);
    this.name = "ProofOfWorkExhaustedError";
  }
}

/** Leading zero bits of `hash` (0 to 8 * length). */
export function leadingZeroBits(hash: Uint8Array): number {
  let bits = 0;
  for (const byte of hash) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(byte) - 24;
  }
  return bits;
}

/** Whether `hash` has at least `difficulty` leading zero bits. */
export function meetsDifficulty(hash: Uint8Array, difficulty: number): boolean {
  return leadingZeroBits(hash) >= difficulty;
}

/**
 * Tries nonces from `startNonce` upward until SHA-256 over `bytesFn(nonce)` has `difficulty`
 * leading zero bits. Blocks the thread: use {@link solveProofOfWorkAsync} in a server.
 * @throws RangeError for a difficulty outside 0..256; ProofOfWorkExhaustedError.
 */
export function solveProofOfWork(
  bytesFn: PowBytesFn,
  difficulty: number,
  options: SolveOptions = {},
): PowSolution {
  checkDifficulty(difficulty);
  const maxAttempts = options.maxAttempts ?? 2 ** 40;
  let nonce = options.startNonce ?? 0n;
  for (let attempts = 1; attempts <= maxAttempts && nonce <= MAX_POW_NONCE; attempts++) {
    const hash = sha256(bytesFn(nonce));
    if (meetsDifficulty(hash, difficulty)) return { nonce, hash, attempts };
    nonce++;
  }
  throw new ProofOfWorkExhaustedError(difficulty, maxAttempts);
}

/**
 * {@link solveProofOfWork} that yields to the event loop every `attemptsPerYield` candidates
 * and stops when `signal` aborts.
 */
export async function solveProofOfWorkAsync(
  bytesFn: PowBytesFn,
  difficulty: number,
  options: SolveOptions = {},
): Promise<PowSolution> {
  checkDifficulty(difficulty);
  const maxAttempts = options.maxAttempts ?? 2 ** 40;
  const perYield = Math.max(1, options.attemptsPerYield ?? 4096);
  const { signal } = options;
  let nonce = options.startNonce ?? 0n;
  for (let attempts = 1; attempts <= maxAttempts && nonce <= MAX_POW_NONCE; attempts++) {
    if (attempts % perYield === 0) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    signal?.throwIfAborted();
    const hash = sha256(bytesFn(nonce));
    if (meetsDifficulty(hash, difficulty)) return { nonce, hash, attempts };
    nonce++;
  }
  throw new ProofOfWorkExhaustedError(difficulty, maxAttempts);
}

/** Whether SHA-256 over `bytes` has at least `difficulty` leading zero bits. */
export function verifyProofOfWork(bytes: Uint8Array, difficulty: number): boolean {
  if (!Number.isInteger(difficulty) || difficulty < 0 || difficulty > MAX_POW_DIFFICULTY) {
    return false;
  }
  return meetsDifficulty(sha256(bytes), difficulty);
}

function checkDifficulty(difficulty: number): void {
  if (!Number.isInteger(difficulty) || difficulty < 0 || difficulty > MAX_POW_DIFFICULTY) {
    throw new RangeError(
      `proof-of-work difficulty must be an integer in 0..256, got ${difficulty}`,
    );
  }
}
