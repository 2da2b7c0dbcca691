/**
 * Hashes and hex helpers used across identity: SHA3-256 for request bodies (Bittensor's
 * `body_hash`) and SHA-256 for proof of work.
 *
 * Both come from node:crypto (OpenSSL, audited and maintained with Node itself): every signed
 * request hashes its body, and OpenSSL's native SHA3-256 measured ~8x faster here than the pure-JS
 * @noble/hashes (257 vs 34 MB/s on 1 KiB bodies, bench/verify.bench.ts). Both produce the standard
 * FIPS 202 / FIPS 180-4 digests.
 */
import { createHash } from "node:crypto";

/** SHA3-256 (FIPS 202, not Keccak-256) of `bytes`; 32 bytes. */
export function sha3_256(bytes: Uint8Array): Uint8Array {
  const digest = createHash("sha3-256").update(bytes).digest();
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
}

/** SHA-256 of `bytes`; 32 bytes. */
export function sha256(bytes: Uint8Array): Uint8Array {
  const digest = createHash("sha256").update(bytes).digest();
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
}

/** Thrown by {@link fromHex} when the text is not an even-length hex string. */
export class InvalidHexError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidHexError";
  }
}

const HEX_PATTERN = /^(?:[0-9a-fA-F]{2})*$/;

/** Lowercase hex of `bytes`, two characters per byte, no prefix. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/**
 * Bytes of a hex string (either case, no `0x` prefix).
 * @param expectedBytes when given, the decoded length must equal it.
 * @throws InvalidHexError naming the problem (odd length, non-hex character, wrong length).
 */
export function fromHex(hex: string, expectedBytes?: number): Uint8Array {
  if (typeof hex !== "string") {
    throw new InvalidHexError(`expected a hex string, got ${typeof hex}`);
  }
  if (hex.length % 2 !== 0) {
    throw new InvalidHexError(`hex string has an odd length (${hex.length})`);
  }
  if (!HEX_PATTERN.test(hex)) {
    throw new InvalidHexError("hex string contains a character outside 0-9a-f");
  }
  if (expectedBytes !== undefined && hex.length !== expectedBytes * 2) {
    throw new InvalidHexError(`expected ${expectedBytes} bytes of hex, got ${hex.length / 2}`);
  }
  return new Uint8Array(Buffer.from(hex, "hex"));
}

/** Whether two byte strings are equal, in time independent of where they differ. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}
