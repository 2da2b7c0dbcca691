/**
 * A transport to a peer (job server, registry) that signs every call with the node's key for the
 * peer's address, over one HTTP/2 session so calls leave in nonce order.
 */
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import type { KeyPair } from "@tessera/identity/keys";

/** Options of {@link createSignedTransport}. */
export interface SignedTransportOptions {
  /** The peer's base URL (HTTP/2 cleartext or TLS). */
  readonly baseUrl: string;
  /** The peer's address: the `target` of every signature. */
  readonly target: string;
  readonly keyPair: KeyPair;
  /** The node's nonce source, shared by every transport that signs with its key. */
  readonly nonceSource: () => bigint;
}

/** A transport and the session to close with it. */
export interface SignedTransport {
  readonly transport: Transport;
  /** Closes the HTTP/2 session; in-flight calls fail. Safe to call twice. */
  close(): void;
}

/** A signed Connect transport to one peer. */
export function createSignedTransport(options: SignedTransportOptions): SignedTransport {
  const session = new Http2SessionManager(options.baseUrl, {
    // Assignment streams stay open for minutes: ping so a dead connection is noticed.
    pingIntervalMs: 15_000,
    pingTimeoutMs: 10_000,
  });
  const transport = createConnectTransport({
    baseUrl: options.baseUrl,
    httpVersion: "2",
    sessionManager: session,
    // Unary calls that get no answer give up (and are retried); streams set their own deadline.
    defaultTimeoutMs: 30_000,
    interceptors: [
      createSigningInterceptor({
        keyPair: options.keyPair,
        target: options.target,
        nonceSource: options.nonceSource,
      }),
    ],
  });
  return { transport, close: () => session.abort() };
}
