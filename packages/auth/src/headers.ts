/**
 * The request headers of a signed request (all lowercase, as HTTP/2 sends them). See
 * @tessera/identity/request-signing for the canonical message the signature covers.
 */
export const signedRequestHeaders = Object.freeze({
  /** The caller's address (`tsr1…`); the verifier takes the public key from it. */
  caller: "tessera-caller",
  /** The address of the server the request is for. */
  target: "tessera-target",
  /** Nanosecond timestamp, unsigned decimal; strictly increasing per caller. */
  nonce: "tessera-nonce",
  /** The request's id: printable ASCII without ".", at most 128 characters. */
  requestId: "tessera-request-id",
  /** Lowercase hex of SHA3-256 over the request message's protobuf binary encoding. */
  bodyHash: "tessera-body-hash",
  /** Lowercase hex of the caller's 64-byte ed25519 signature over the canonical message. */
  signature: "tessera-signature",
} as const);

/** Every header name in {@link signedRequestHeaders}, e.g. for CORS allow-lists. */
export const signedRequestHeaderNames: readonly string[] = Object.freeze(
  Object.values(signedRequestHeaders),
);
