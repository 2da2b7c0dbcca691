/**
 * A client of a gateway's client side (GatewayClientService: inference tasks, models, direct
 * access) on one HTTP/2 session, every call signed by the caller's key for the gateway's address.
 */
import { type Client, createClient } from "@connectrpc/connect";
import type { KeyPair } from "@tessera/identity/keys";
import { GatewayClientService } from "@tessera/proto/tessera/gateway/v1/gateway_client_service_pb.js";
import { openTransport } from "./service-client.js";

/** Where the gateway is and who calls it. */
export interface GatewayClientOptions {
  /** The gateway's base URL, e.g. `http://127.0.0.1:7002` (the devnet's). */
  readonly baseUrl: string;
  /** The gateway's own address (`tsr1…`): the target every call is signed for. */
  readonly address: string;
  /** The caller: the client of the tasks it submits and the payer of their escrows. */
  readonly keyPair: KeyPair;
  /** Default deadline of each unary call; default 30 s. Streams set their own. */
  readonly timeoutMs?: number | undefined;
}

/** A signed client of one gateway. */
export interface GatewayClient {
  readonly tasks: Client<typeof GatewayClientService>;
  /** The gateway's address (the escrow arbiter of paid tasks). */
  readonly address: string;
  /** The caller's address. */
  readonly callerAddress: string;
  /** Closes the session (and any call still on it); safe to call twice. */
  close(): void;
}

/**
 * Opens a {@link GatewayClient}. Nothing is sent until the first call.
 * @throws InvalidServiceUrlError for a base URL that is not http(s).
 */
export function openGatewayClient(options: GatewayClientOptions): GatewayClient {
  const { transport, close } = openTransport({
    baseUrl: options.baseUrl,
    signer: { keyPair: options.keyPair, target: options.address },
    timeoutMs: options.timeoutMs,
  });
  return {
    tasks: createClient(GatewayClientService, transport),
    address: options.address,
    callerAddress: options.keyPair.address,
    close,
  };
}
