/**
 * Connections from the CLI to Tessera services: gRPC over HTTP/2 (cleartext or TLS, from the URL's
 * scheme) on one session that the command closes when it ends, so the process can exit.
 */
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import type { KeyPair } from "@tessera/identity/keys";
import { CliError } from "./cli-error.js";

/** Deadline of each call the CLI makes, in milliseconds. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/** Who signs the calls, and for which server. */
export interface CallSigner {
  /** The caller's key pair. */
  readonly keyPair: KeyPair;
  /** The address of the server the calls go to (the signed `target`). */
  readonly target: string;
}

/** Options of {@link openServiceClient}. */
export interface ServiceClientOptions {
  /** The service's base URL, `http://host:port` (h2c) or `https://host:port`. */
  readonly baseUrl: string;
  /**
   * Signs every call, reads included (a signed read tells the server who reads); without it no
   * call is signed, and a server rejects the ones that must be.
   */
  readonly signer?: CallSigner | undefined;
  /** Deadline of each call; default {@link DEFAULT_CALL_TIMEOUT_MS}. */
  readonly timeoutMs?: number | undefined;
}

/** A client of one service and the HTTP/2 session under it. */
export interface ServiceClient<S extends DescService> {
  readonly client: Client<S>;
  /** Closes the HTTP/2 session (and any call still on it); safe to call twice. */
  close(): void;
}

/**
 * A client of `service` at `options.baseUrl`. Call {@link ServiceClient.close} when done (see
 * {@link withServiceClient}); an open session keeps the process alive.
 * @throws CliError when the URL is not an http(s) URL.
 */
export function openServiceClient<S extends DescService>(
  service: S,
  options: ServiceClientOptions,
): ServiceClient<S> {
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
  return {
    client: createClient(service, transport),
    close: () => sessionManager.abort(),
  };
}

/** Runs `use` with a client of `service` and closes the client's session however `use` ends. */
export async function withServiceClient<S extends DescService, T>(
  service: S,
  options: ServiceClientOptions,
  use: (client: Client<S>) => Promise<T>,
): Promise<T> {
  const { client, close } = openServiceClient(service, options);
  try {
    return await use(client);
  } finally {
    close();
  }
}

function checkBaseUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError(`invalid service URL ${JSON.stringify(text)}: use http://host:port`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CliError(`invalid service URL ${JSON.stringify(text)}: use http://host:port`);
  }
  return text.replace(/\/+$/, "");
}
