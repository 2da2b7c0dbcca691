/**
 * Connections from the SDK to Tessera services: gRPC over HTTP/2 (cleartext for `http://`, TLS
 * for `https://`) on one session per client, every call signed by the caller's key for the
 * server's address.
 */
import type { DescService } from "@bufbuild/protobuf";
import {
  type CallOptions,
  type Client,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import type { KeyPair } from "@tessera/identity/keys";

/** Deadline of each unary call the SDK makes, in milliseconds. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/** Who signs the calls, and for which server. */
export interface CallSigner {
  /** The caller's key pair. */
  readonly keyPair: KeyPair;
  /** The address of the server the calls go to (the signed `target`, the server's `tsr1…`). */
  readonly target: string;
}

/** Options of {@link openTransport} and {@link openServiceClient}. */
export interface ServiceConnectionOptions {
  /** The service's base URL, `http://host:port` (h2c) or `https://host:port`. */
  readonly baseUrl: string;
  /**
   * Signs every call, reads included (a signed read tells the server who reads); without it no
   * call is signed, and a server rejects the ones that must be.
   */
  readonly signer?: CallSigner | undefined;
  /** Default deadline of each call; default {@link DEFAULT_CALL_TIMEOUT_MS}. */
  readonly timeoutMs?: number | undefined;
}

/** A transport to one server and the HTTP/2 session under it. */
export interface ServiceTransport {
  readonly transport: Transport;
  /** Closes the HTTP/2 session (and any call still on it); safe to call twice. */
  close(): void;
}

/** A client of one service and the HTTP/2 session under it. */
export interface ServiceClient<S extends DescService> {
  readonly client: Client<S>;
  /** Closes the HTTP/2 session (and any call still on it); safe to call twice. */
  close(): void;
}

/** A base URL that is not `http(s)://host[:port]`. */
export class InvalidServiceUrlError extends Error {
  constructor(readonly url: string) {
    super(`invalid service URL ${JSON.stringify(url)}: use http://host:port`);
    this.name = "InvalidServiceUrlError";
  }
}

/**
 * A gRPC transport to `options.baseUrl`. Clients of several services of one server should share
 * it: they then share its signer's nonce source, so their calls never collide on a nonce.
 * @throws InvalidServiceUrlError when the URL is not an http(s) URL.
 */
export function openTransport(options: ServiceConnectionOptions): ServiceTransport {
  const baseUrl = checkBaseUrl(options.baseUrl);
  const interceptors: Interceptor[] = [];
  if (options.signer) {
    interceptors.push(
      createSigningInterceptor({ keyPair: options.signer.keyPair, target: options.signer.target }),
    );
  }
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager,
    interceptors,
    defaultTimeoutMs: options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
  });
  return { transport, close: () => sessionManager.abort() };
}

/**
 * A client of `service` at `options.baseUrl`. Call {@link ServiceClient.close} when done; an open
 * session keeps the process alive.
 * @throws InvalidServiceUrlError when the URL is not an http(s) URL.
 */
export function openServiceClient<S extends DescService>(
  service: S,
  options: ServiceConnectionOptions,
): ServiceClient<S> {
  const { transport, close } = openTransport(options);
  return { client: createClient(service, transport), close };
}

function checkBaseUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidServiceUrlError(text);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new InvalidServiceUrlError(text);
  return text.replace(/\/+$/, "");
}

/** Per-call options with only the parts that are set (CallOptions takes no `undefined`s). */
export function callOptions(
  signal: AbortSignal | undefined,
  timeoutMs?: number | undefined,
): CallOptions {
  const options: CallOptions = {};
  if (signal !== undefined) options.signal = signal;
  if (timeoutMs !== undefined) options.timeoutMs = timeoutMs;
  return options;
}
