/**
 * Addresses: the text form of a 32-byte ed25519 public key.
 *
 * An address is bech32m (BIP 350) with the human-readable prefix `tsr`, e.g. `tsr1...` (62
 * characters). The key is the address's payload, so a verifier recovers the public key from the
 * address alone, with no lookup; the 6-character checksum catches any single typo (and any
 * burst of up to 4 wrong characters). Addresses are ids everywhere, so only the canonical
 * lowercase form is accepted: one key has exactly one address string.
 */
import { bech32m } from "@scure/base";

/** The human-readable prefix of every Tessera address. */
export const ADDRESS_PREFIX = "tsr";
/** Bytes in an ed25519 public key, the payload of an address. */
export const PUBLIC_KEY_BYTES = 32;
/** Characters in every address: prefix, separator "1", 52 data characters, 6 checksum characters. */
export const ADDRESS_LENGTH = ADDRESS_PREFIX.length + 1 + Math.ceil((PUBLIC_KEY_BYTES * 8) / 5) + 6;

const BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/** What is wrong with a text that is not an address. */
export type InvalidAddressReason =
  | "not_a_string"
  | "not_lowercase"
  | "missing_separator"
  | "wrong_prefix"
  | "invalid_character"
  | "wrong_length"
  | "bad_checksum";

/** Thrown by {@link publicKeyFromAddress}; `reason` says what is wrong, the message says it in words. */
export class InvalidAddressError extends Error {
  readonly reason: InvalidAddressReason;
  constructor(reason: InvalidAddressReason, message: string) {
    super(`invalid address: ${message}`);
    this.name = "InvalidAddressError";
    this.reason = reason;
  }
}

/**
 * The address of a 32-byte ed25519 public key.
 * @throws TypeError when `publicKey` is not 32 bytes.
 */
export function addressFromPublicKey(publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== PUBLIC_KEY_BYTES) {
    throw new TypeError(`a public key is ${PUBLIC_KEY_BYTES} bytes`);
  }
  return bech32m.encode(ADDRESS_PREFIX, bech32m.toWords(publicKey), ADDRESS_LENGTH);
}

/**
 * The 32-byte public key an address encodes.
 * Checks, in order: lowercase, separator, prefix `tsr`, characters, length, checksum.
 * @throws InvalidAddressError naming the first problem found.
 */
export function publicKeyFromAddress(address: string): Uint8Array {
  if (typeof address !== "string") {
    throw new InvalidAddressError("not_a_string", `expected a string, got ${typeof address}`);
  }
  if (address !== address.toLowerCase()) {
    throw new InvalidAddressError("not_lowercase", "addresses are lowercase");
  }
  const separator = address.lastIndexOf("1");
  if (separator < 0) {
    throw new InvalidAddressError(
      "missing_separator",
      `expected "${ADDRESS_PREFIX}1" followed by the key`,
    );
  }
  const prefix = address.slice(0, separator);
  if (prefix !== ADDRESS_PREFIX) {
    throw new InvalidAddressError(
      "wrong_prefix",
      `expected prefix "${ADDRESS_PREFIX}", got "${prefix.slice(0, 16)}"`,
    );
  }
  for (let i = separator + 1; i < address.length; i++) {
    const ch = address[i] as string;
    if (!BECH32_CHARSET.includes(ch)) {
      throw new InvalidAddressError(
        "invalid_character",
        `character ${JSON.stringify(ch)} at position ${i + 1} is not in the bech32 alphabet`,
      );
    }
  }
  if (address.length !== ADDRESS_LENGTH) {
    throw new InvalidAddressError(
      "wrong_length",
      `expected ${ADDRESS_LENGTH} characters, got ${address.length}`,
    );
  }
  const decoded = bech32m.decodeUnsafe(address, ADDRESS_LENGTH);
  if (!decoded) {
    throw new InvalidAddressError(
      "bad_checksum",
      "checksum does not match (a character is mistyped)",
    );
  }
  const bytes = bech32m.fromWordsUnsafe(decoded.words);
  if (!bytes || bytes.length !== PUBLIC_KEY_BYTES) {
    throw new InvalidAddressError("wrong_length", `payload is not a ${PUBLIC_KEY_BYTES}-byte key`);
  }
  return bytes;
}

/** Whether `text` is a valid, canonical address. Never throws. */
export function isAddress(text: unknown): text is string {
  if (typeof text !== "string") return false;
  try {
    publicKeyFromAddress(text);
    return true;
  } catch {
    return false;
  }
}
