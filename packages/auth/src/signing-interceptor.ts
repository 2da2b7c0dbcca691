/**
 * Client side of signed requests: an interceptor that signs every call it sends.
 */
import { randomUUID } from "node:crypto";
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { isAddress } from "@tessera/identity/address";
import { toHex } from "@tessera/identity/hash";
import type { KeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import {
  InvalidRequestFieldsError,
  requestSigningMessage,
} from "@tessera/identity/request-signing";
import { EMPTY_BODY_HASH, hashMessage, peekFirst } from "./body-hash.js";
import { signedRequestHeaders as H } from "./headers.js";

/** Options of {@link createSigningInterceptor}. */
export interface SigningInterceptorOptions {
  /** The caller's key pair; its address goes into `tessera-caller`. */
  readonly keyPair: KeyPair;
  /** The address of the server the transport talks to (its `selfAddress`). */
  readonly target: string;
  /**
   * Strictly increasing nanosecond nonces; default a new `createNonceSource()` (wall clock).
   * Share one source between every interceptor that signs with the same key for the same server,
   * or their nonces can collide and the server rejects the later one as replayed.
   */
  readonly nonceSource?: (() => bigint) | undefined;
  /** Which calls to sign; default every call (a signed read tells the server who reads). */
  readonly shouldSign?: ((method: DescMethod) => boolean) | undefined;
}

const encoder = new TextEncoder();

/**
 * A client interceptor that signs each call with `keyPair` for `target`: it sets the six
 * `tessera-*` headers (see ./headers.ts) with a fresh nonce, the request id already in
 * `tessera-request-id` or a new UUID, and the SHA3-256 of the request message.
 *
 * Streams are covered by their first message: a server-streaming call's single request, or the
 * first message of a client or bidi stream, which the interceptor reads BEFORE the call starts
 * (so a bidi client must send its first message without waiting for the server). The messages
 * after the first ride on the authenticated stream unsigned.
 *
 * The nonce is taken, the call signed (synchronously, ~35 µs) and handed to the transport in one
 * go, so calls leave in nonce order and the server, which accepts each caller's nonces only in
 * increasing order, accepts concurrent calls on one transport. Calls of one key that can overtake
 * each other on the way (separate transports, HTTP/1.1 connection pools) may be refused with
 * "replayed or stale nonce"; such a refusal has no side effect, so resending the call is safe.
 *
 * @throws TypeError at creation when `target` is not an address.
 */
export function createSigningInterceptor(options: SigningInterceptorOptions): Interceptor {
  const { keyPair, target } = options;
  if (!isAddress(target)) {
    throw new TypeError("target must be the server's address (tsr1…)");
  }
  const nextNonce = options.nonceSource ?? createNonceSource();
  const shouldSign = options.shouldSign ?? (() => true);

  return (next) => async (req) => {
    if (!shouldSign(req.method)) return next(req);
    let bodyHash: Uint8Array;
    let outgoing = req;
    if (req.stream) {
      const peeked = await peekFirst(req.message);
      bodyHash =
        peeked.first === undefined ? EMPTY_BODY_HASH : hashMessage(req.method.input, peeked.first);
      outgoing = { ...req, message: peeked.messages };
    } else {
      bodyHash = hashMessage(req.method.input, req.message);
    }
    // Taken after the first stream message is in hand, so the nonce is as fresh as the call.
    const nonce = nextNonce();
    const requestId = req.header.get(H.requestId) || randomUUID();
    let message: string;
    try {
      message = requestSigningMessage({
        nonce,
        caller: keyPair.address,
        target,
        requestId,
        bodyHash,
      });
    } catch (error) {
      if (error instanceof InvalidRequestFieldsError) {
        throw new ConnectError(`cannot sign the request: ${error.message}`, Code.InvalidArgument);
      }
      throw error;
    }
    const header = req.header;
    header.set(H.caller, keyPair.address);
    header.set(H.target, target);
    header.set(H.nonce, nonce.toString(10));
    header.set(H.requestId, requestId);
    header.set(H.bodyHash, toHex(bodyHash));
    header.set(H.signature, toHex(keyPair.sign(encoder.encode(message))));
    return next(outgoing);
  };
}
