/**
 * MetagraphService handlers (gossip between registry peers), and the Connect adapter the gossip
 * loop uses to call its peers with signed requests.
 */
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type ServiceImpl,
} from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor, requireCaller } from "@tessera/auth";
import type { KeyPair } from "@tessera/identity/keys";
import { MetagraphService } from "@tessera/proto/tessera/registry/v1/metagraph_service_pb.js";
import { DirectoryError } from "./directory/errors.js";
import { GossipError, type GossipErrorKind } from "./gossip/errors.js";
import type { GossipCall } from "./gossip/gossip-loop.js";
import type { Metagraph } from "./gossip/metagraph.js";
import { toConnectError as validationToConnectError } from "./validation-service.js";

/** What {@link createMetagraphService} needs. */
export interface MetagraphServiceDeps {
  /** This registry's side of gossip (createMetagraph). */
  readonly metagraph: Metagraph;
}

/**
 * MetagraphService: Gossip must be signed by a registry (a configured peer, a registry in the
 * directory, or one introducing itself with its own valid NODE_TYPE_REGISTRY record).
 */
export function createMetagraphService(
  deps: MetagraphServiceDeps,
): ServiceImpl<typeof MetagraphService> {
  return {
    async gossip(request, ctx) {
      const caller = requireCaller(ctx);
      try {
        return await deps.metagraph.exchange(request, caller);
      } catch (error) {
        throw toConnectError(error);
      }
    },
  };
}

const gossipCodes: Readonly<Record<GossipErrorKind, Code>> = {
  invalid_argument: Code.InvalidArgument,
  failed_precondition: Code.FailedPrecondition,
  permission_denied: Code.PermissionDenied,
  resource_exhausted: Code.ResourceExhausted,
};

/** The Connect error for what gossip throws (GossipError by kind; the rest as validation maps it). */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof GossipError) return new ConnectError(error.message, gossipCodes[error.kind]);
  if (error instanceof DirectoryError) return validationToConnectError(error);
  return validationToConnectError(error);
}

/** Options of {@link createGossipCaller}. */
export interface GossipCallerOptions {
  /** The registry's key: every Gossip call is signed with it for the peer's address. */
  readonly keyPair: KeyPair;
  /** Nonce source shared with the registry's other signing clients; default a new one. */
  readonly nonceSource?: (() => bigint) | undefined;
}

/** A {@link GossipCall} with connections to close. */
export interface ClosableGossipCall {
  readonly call: GossipCall;
  /** Closes every connection to peers. Safe to call twice. */
  close(): void;
}

/** Connect clients to registry peers (HTTP/2, one kept session per peer), signing each call. */
export function createGossipCaller(options: GossipCallerOptions): ClosableGossipCall {
  const clients = new Map<
    string,
    { client: Client<typeof MetagraphService>; session: Http2SessionManager }
  >();
  return {
    call(peer, request, signal) {
      const key = `${peer.address} ${peer.url}`;
      let entry = clients.get(key);
      if (entry === undefined) {
        const session = new Http2SessionManager(peer.url);
        const transport = createConnectTransport({
          baseUrl: peer.url,
          httpVersion: "2",
          sessionManager: session,
          interceptors: [
            createSigningInterceptor({
              keyPair: options.keyPair,
              target: peer.address,
              nonceSource: options.nonceSource,
            }),
          ],
        });
        entry = { client: createClient(MetagraphService, transport), session };
        clients.set(key, entry);
      }
      return entry.client.gossip(request, { signal });
    },
    close() {
      for (const { session } of clients.values()) session.abort();
      clients.clear();
    },
  };
}
