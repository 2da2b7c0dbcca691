/**
 * ed25519 key pairs (RFC 8032) from @noble/curves: audited, dependency-free apart from
 * @noble/hashes, and the same code in Node, browsers and workers.
 *
 * A {@link KeyPair} keeps its secret in a private field and never prints it: `JSON.stringify`,
 * `util.inspect`, `console.log` and `String()` show only the address. The secret leaves the object
 * only through {@link KeyPair.exportSecretKey}, which the key-file writer uses.
 */
import { inspect } from "node:util";
import { ed25519 } from "@noble/curves/ed25519.js";
import { addressFromPublicKey, PUBLIC_KEY_BYTES } from "./address.js";

/** Bytes in an ed25519 secret key (the RFC 8032 seed). */
export const SECRET_KEY_BYTES = 32;
/** Bytes in an ed25519 signature. */
export const SIGNATURE_BYTES = 64;

/** An actor's ed25519 key pair with its address. Immutable; the secret never prints. */
export class KeyPair {
  readonly #secretKey: Uint8Array;
  /** The 32-byte ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** The address derived from {@link publicKey} (`tsr1...`). */
  readonly address: string;

  /** Use {@link generateKeyPair} or {@link keyPairFromSecretKey}. */
  private constructor(secretKey: Uint8Array, publicKey: Uint8Array) {
    this.#secretKey = secretKey;
    this.publicKey = publicKey;
    this.address = addressFromPublicKey(publicKey);
    Object.freeze(this);
  }

  /**
   * The key pair of a 32-byte ed25519 secret key (copied).
   * @throws TypeError when the secret is not 32 bytes.
   */
  static fromSecretKey(secretKey: Uint8Array): KeyPair {
    if (!(secretKey instanceof Uint8Array) || secretKey.length !== SECRET_KEY_BYTES) {
      throw new TypeError(`an ed25519 secret key is ${SECRET_KEY_BYTES} bytes`);
    }
    const copy = Uint8Array.from(secretKey);
    return new KeyPair(copy, ed25519.getPublicKey(copy));
  }

  /** Signs `message`; returns the 64-byte signature. Deterministic (RFC 8032). */
  sign(message: Uint8Array): Uint8Array {
    return ed25519.sign(message, this.#secretKey);
  }

  /** A copy of the 32-byte secret key. Only key files should need this. */
  exportSecretKey(): Uint8Array {
    return Uint8Array.from(this.#secretKey);
  }

  /** `{ address }`: what `JSON.stringify` shows. */
  toJSON(): { address: string } {
    return { address: this.address };
  }

  /** `KeyPair(tsr1...)`. */
  toString(): string {
    return `KeyPair(${this.address})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** A new random key pair (secret from the platform's CSPRNG). */
export function generateKeyPair(): KeyPair {
  return KeyPair.fromSecretKey(ed25519.utils.randomSecretKey());
}

/**
 * The key pair of a 32-byte ed25519 secret key (copied).
 * @throws TypeError when the secret is not 32 bytes.
 */
export function keyPairFromSecretKey(secretKey: Uint8Array): KeyPair {
  return KeyPair.fromSecretKey(secretKey);
}

/** Signs `message` with a 32-byte secret key; returns the 64-byte signature. */
export function sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
  return ed25519.sign(message, secretKey);
}

/**
 * Whether `signature` is `publicKey`'s ed25519 signature over `message` (RFC 8032 strict
 * encodings, cofactorless). Returns false, never throws, for malformed or empty inputs: a missing
 * signature is a failed check (Bittensor issue #3392 accepted empty ones).
 */
export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== PUBLIC_KEY_BYTES) return false;
  if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_BYTES) return false;
  if (!(message instanceof Uint8Array)) return false;
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}
