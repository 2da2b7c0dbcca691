/**
 * Signed requests (Bittensor's Synapse signature, fixed): the caller signs, with ed25519, the
 * UTF-8 bytes of
 *
 *     `${nonce}.${caller}.${target}.${requestId}.${bodyHashHex}`
 *
 * - nonce: nanosecond timestamp, decimal (see ./nonce.ts); strictly increasing per caller.
 * - caller: the caller's address; the verifier takes the public key from it.
 * - target: whom the request is for (the receiving actor's address, or the procedure path); the
 *   verifier checks it names itself, so a signed request cannot be replayed elsewhere.
 * - requestId: the request's id.
 * - bodyHashHex: lowercase hex of SHA3-256 over the request message's protobuf binary encoding,
 *   so the whole body is covered (Bittensor's old signature covered only keys and nonce).
 *
 * The message parses back unambiguously: nonce, caller and hash contain no ".", nor may the
 * request id, so only `target` may hold dots (the remainder between caller and request id).
 * Every field is printable ASCII, which also keeps these messages disjoint from signed record
 * encodings (those carry a raw 32-byte public key). The freshness and per-caller ordering of
 * nonces belong to the verifier (the interceptors), not here: this module is pure.
 */
import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { isAddress, publicKeyFromAddress } from "./address.js";
import { sha3_256, toHex } from "./hash.js";
import { type KeyPair, verify } from "./keys.js";
import { MAX_NONCE, parseNonce } from "./nonce.js";

/** What a request signature covers. */
export interface SignedRequestFields {
  /** Nanosecond timestamp; a bigint or its decimal string. */
  readonly nonce: bigint | string;
  /** The signer's address. */
  readonly caller: string;
  /** Whom the request is for: 1 to 256 printable ASCII characters. */
  readonly target: string;
  /** The request's id: 1 to 128 printable ASCII characters, no ".". */
  readonly requestId: string;
  /** SHA3-256 of the request body (32 bytes); see {@link hashRequestMessage}. */
  readonly bodyHash: Uint8Array;
}

/** The fields cannot form a signed-request message; the message names the field. */
export class InvalidRequestFieldsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidRequestFieldsError";
  }
}

/** The key pair signing a request is not its `caller`. */
export class CallerMismatchError extends Error {
  constructor(caller: string, signer: string) {
    super(`cannot sign as ${caller} with the key of ${signer}`);
    this.name = "CallerMismatchError";
  }
}

const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;
const BODY_HASH_BYTES = 32;
const encoder = new TextEncoder();

/** SHA3-256 over raw body bytes. */
export function hashRequestBody(body: Uint8Array): Uint8Array {
  return sha3_256(body);
}

/** SHA3-256 over `message`'s protobuf binary encoding: the body hash of a request. */
export function hashRequestMessage<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): Uint8Array {
  return sha3_256(toBinary(schema, message));
}

/**
 * The canonical message a request signature covers.
 * @throws InvalidRequestFieldsError naming the malformed field.
 */
export function requestSigningMessage(fields: SignedRequestFields): string {
  const nonce = nonceText(fields.nonce);
  if (!isAddress(fields.caller)) {
    throw new InvalidRequestFieldsError("caller is not a valid address");
  }
  if (
    typeof fields.target !== "string" ||
    fields.target.length > 256 ||
    !PRINTABLE_ASCII.test(fields.target)
  ) {
    throw new InvalidRequestFieldsError("target must be 1 to 256 printable ASCII characters");
  }
  if (
    typeof fields.requestId !== "string" ||
    fields.requestId.length > 128 ||
    !PRINTABLE_ASCII.test(fields.requestId) ||
    fields.requestId.includes(".")
  ) {
    throw new InvalidRequestFieldsError(
      'requestId must be 1 to 128 printable ASCII characters without "."',
    );
  }
  if (!(fields.bodyHash instanceof Uint8Array) || fields.bodyHash.length !== BODY_HASH_BYTES) {
    throw new InvalidRequestFieldsError(`bodyHash must be ${BODY_HASH_BYTES} bytes (SHA3-256)`);
  }
  return `${nonce}.${fields.caller}.${fields.target}.${fields.requestId}.${toHex(fields.bodyHash)}`;
}

/**
 * `keyPair`'s 64-byte signature over the request's canonical message.
 * @throws CallerMismatchError when `fields.caller` is not `keyPair.address`;
 * InvalidRequestFieldsError for malformed fields.
 */
export function signRequest(keyPair: KeyPair, fields: SignedRequestFields): Uint8Array {
  if (fields.caller !== keyPair.address) {
    throw new CallerMismatchError(fields.caller, keyPair.address);
  }
  return keyPair.sign(encoder.encode(requestSigningMessage(fields)));
}

/**
 * Whether `signature` is the caller's signature over the request's canonical message, with the
 * public key taken from the caller's address. False, never a throw, for a missing, empty or
 * malformed signature and for malformed fields.
 */
export function verifyRequestSignature(
  fields: SignedRequestFields,
  signature: Uint8Array | undefined,
): boolean {
  if (!(signature instanceof Uint8Array) || signature.length === 0) return false;
  let message: string;
  try {
    message = requestSigningMessage(fields);
  } catch {
    return false;
  }
  return verify(publicKeyFromAddress(fields.caller), encoder.encode(message), signature);
}

function nonceText(nonce: bigint | string): string {
  if (typeof nonce === "bigint") {
    if (nonce < 0n || nonce > MAX_NONCE) {
      throw new InvalidRequestFieldsError("nonce must be in 0..2^64-1");
    }
    return nonce.toString(10);
  }
  try {
    return parseNonce(nonce).toString(10);
  } catch (error) {
    throw new InvalidRequestFieldsError(`nonce: ${(error as Error).message}`);
  }
}
