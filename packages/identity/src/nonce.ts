/**
 * Request nonces: nanosecond timestamps as unsigned 64-bit integers, written in decimal.
 * A signer's nonces must strictly increase (the verifier keeps a per-caller high-water mark).
 */

/** Largest nonce: 2^64 - 1 (a uint64). */
export const MAX_NONCE = 2n ** 64n - 1n;

const DECIMAL_PATTERN = /^(?:0|[1-9][0-9]{0,19})$/;

/** Options of {@link createNonceSource}. */
export interface NonceSourceOptions {
  /** The wall clock in milliseconds; default `Date.now`. */
  readonly nowMs?: (() => number) | undefined;
}

/**
 * A source of strictly increasing nanosecond nonces: the wall clock in nanoseconds, or one more
 * than the previous nonce when the clock has not moved past it (same millisecond, or the clock
 * stepped back). Use one source per key.
 */
export function createNonceSource(options: NonceSourceOptions = {}): () => bigint {
  const nowMs = options.nowMs ?? Date.now;
  let last = 0n;
  return () => {
    const wall = BigInt(Math.floor(nowMs())) * 1_000_000n;
    last = wall > last ? wall : last + 1n;
    return last;
  };
}

/** Thrown by {@link parseNonce}. */
export class InvalidNonceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidNonceError";
  }
}

/**
 * The nonce a decimal string encodes: digits only, no sign, no leading zeros, at most 2^64 - 1.
 * @throws InvalidNonceError.
 */
export function parseNonce(text: string): bigint {
  if (typeof text !== "string" || !DECIMAL_PATTERN.test(text)) {
    throw new InvalidNonceError("a nonce is an unsigned decimal integer without leading zeros");
  }
  const value = BigInt(text);
  if (value > MAX_NONCE) throw new InvalidNonceError("a nonce is at most 2^64 - 1");
  return value;
}
