/**
 * Signed clients a service (job server, gateway) uses to reach its peers: the wallet (escrows)
 * and the registry (validation, node events, nodes, subnets). Each keeps one HTTP/2 session,
 * signs every call with the service's key for the peer's address, and turns Connect errors into
 * {@link PeerError}s, so callers need no Connect types.
 */
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import type { KeyPair } from "@tessera/identity/keys";
import type {
  CompletionValidation,
  ComputeCompletion,
  PreprocessingValidation,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type NodeEntry,
  type NodeEventKind,
  RegistryService,
  type SubnetMetadata,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import type {
  ExecutionEvidence,
  WorkDescription,
} from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import { ValidationService } from "@tessera/proto/tessera/registry/v1/validation_service_pb.js";
import type { Escrow } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { PeerError } from "./peer-error.js";
import { SDK_PROTOCOL_VERSION as PROTOCOL_VERSION } from "./protocol-version.js";

/** The wallet as an escrow arbiter (job server, gateway) uses it. */
export interface WalletPort {
  /** The escrow. @throws PeerError */
  getEscrow(escrowId: string): Promise<Escrow>;
  /** Refunds the escrow to its payer (idempotent); resolves to the refund's transaction id. */
  refundEscrow(
    escrowId: string,
    reason: string,
    validation?: CompletionValidation,
  ): Promise<string>;
  /** Releases the escrow by `validation`'s tree (idempotent); resolves to the first transaction id. */
  releaseEscrow(escrowId: string, validation: CompletionValidation): Promise<string>;
  close(): void;
}

/** One node event for the registry's reputation book. */
export interface NodeEvent {
  readonly eventId: string;
  readonly nodeAddress: string;
  readonly kind: NodeEventKind;
  readonly requestId: string;
  readonly occurredAtMs: number;
  readonly computeTimeMs: number;
  readonly detail: string;
}

/** The registry as a router of paid work (job server, gateway) uses it. */
export interface RegistryPort {
  /** Route-and-price approval of a paid job's or task's placement. @throws PeerError */
  requestPreprocessing(work: WorkDescription): Promise<PreprocessingValidation>;
  /** The validators' verdict on a finished paid job. @throws PeerError */
  requestCompletion(
    completion: ComputeCompletion,
    preprocessing: PreprocessingValidation,
    evidence: ExecutionEvidence,
  ): Promise<CompletionValidation>;
  /** Reports what a node did. @throws PeerError */
  reportNodeEvent(event: NodeEvent): Promise<void>;
  /** The registry's reputation and ban of a node; undefined when it does not know the node. */
  nodeStanding(
    address: string,
  ): Promise<{ reputation: number; bannedUntilMs: number | undefined } | undefined>;
  /** The registry's directory entry of a node; undefined when it does not know the node. */
  getNode(address: string): Promise<NodeEntry | undefined>;
  /** A subnet; undefined when the registry does not know it. @throws PeerError */
  getSubnet(subnetId: bigint): Promise<SubnetMetadata | undefined>;
  close(): void;
}

/** Where a peer is and how to reach it. */
export interface PeerOptions {
  readonly url: string;
  /** The peer's address: calls are signed for it. */
  readonly address: string;
  /** The calling service's key. */
  readonly keyPair: KeyPair;
  /** Deadline of each call, in milliseconds. */
  readonly timeoutMs: number;
  /** Nonce source shared by every client signing with the service's key for this peer. */
  readonly nonceSource?: (() => bigint) | undefined;
}

const UNREACHABLE = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Canceled, Code.Unknown]);

function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/** Calls `send`, turning its failure into a PeerError naming `peer`. */
async function call<T>(peer: string, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (error) {
    const connectError = ConnectError.from(error);
    throw new PeerError(
      UNREACHABLE.has(connectError.code) ? "unreachable" : "refused",
      codeName(connectError.code),
      `${peer}: ${connectError.rawMessage}`,
      error,
    );
  }
}

function signedTransport(options: PeerOptions) {
  const session = new Http2SessionManager(options.url);
  const transport = createConnectTransport({
    baseUrl: options.url,
    httpVersion: "2",
    sessionManager: session,
    interceptors: [
      createSigningInterceptor({
        keyPair: options.keyPair,
        target: options.address,
        nonceSource: options.nonceSource,
      }),
    ],
  });
  return { session, transport };
}

/** A signed wallet client. */
export function createWalletPort(options: PeerOptions): WalletPort {
  const { session, transport } = signedTransport(options);
  const client: Client<typeof WalletService> = createClient(WalletService, transport);
  const timeoutMs = options.timeoutMs;
  return {
    async getEscrow(escrowId) {
      const response = await call("wallet", () =>
        client.getEscrow({ protocolVersion: PROTOCOL_VERSION, escrowId }, { timeoutMs }),
      );
      if (response.escrow === undefined) {
        throw new PeerError("refused", "internal", "wallet: GetEscrow answered no escrow");
      }
      return response.escrow;
    },
    async refundEscrow(escrowId, reason, validation) {
      const response = await call("wallet", () =>
        client.refundEscrow(
          {
            protocolVersion: PROTOCOL_VERSION,
            escrowId,
            reason: reason.slice(0, 256),
            ...(validation === undefined ? {} : { completionValidation: validation }),
          },
          { timeoutMs },
        ),
      );
      return response.transaction?.transactionId ?? "";
    },
    async releaseEscrow(escrowId, validation) {
      const response = await call("wallet", () =>
        client.releaseEscrow(
          { protocolVersion: PROTOCOL_VERSION, escrowId, completionValidation: validation },
          { timeoutMs },
        ),
      );
      return response.transactions[0]?.transactionId ?? "";
    },
    close() {
      session.abort();
    },
  };
}

/** A signed registry client. */
export function createRegistryPort(options: PeerOptions): RegistryPort {
  const { session, transport } = signedTransport(options);
  const validation: Client<typeof ValidationService> = createClient(ValidationService, transport);
  const registry: Client<typeof RegistryService> = createClient(RegistryService, transport);
  const timeoutMs = options.timeoutMs;
  const getNode = async (address: string): Promise<NodeEntry | undefined> => {
    try {
      const response = await call("registry", () =>
        registry.getNode(
          { protocolVersion: PROTOCOL_VERSION, nodeAddress: address },
          { timeoutMs },
        ),
      );
      return response.node;
    } catch (error) {
      if (error instanceof PeerError && error.code === "not_found") return undefined;
      throw error;
    }
  };
  return {
    async requestPreprocessing(work) {
      const response = await call("registry", () =>
        validation.requestPreprocessingValidation(
          { protocolVersion: PROTOCOL_VERSION, work },
          { timeoutMs },
        ),
      );
      if (response.validation === undefined) {
        throw new PeerError("refused", "internal", "registry: no preprocessing validation");
      }
      return response.validation;
    },
    async requestCompletion(completion, preprocessing, evidence) {
      const response = await call("registry", () =>
        validation.requestCompletionValidation(
          {
            protocolVersion: PROTOCOL_VERSION,
            computeCompletion: completion,
            preprocessingValidation: preprocessing,
            evidence,
          },
          { timeoutMs },
        ),
      );
      if (response.validation === undefined) {
        throw new PeerError("refused", "internal", "registry: no completion validation");
      }
      return response.validation;
    },
    async reportNodeEvent(event) {
      await call("registry", () =>
        registry.reportNodeEvent(
          {
            protocolVersion: PROTOCOL_VERSION,
            eventId: event.eventId.slice(0, 128),
            nodeAddress: event.nodeAddress,
            kind: event.kind,
            requestId: event.requestId,
            occurredAt: timestampFromMs(event.occurredAtMs),
            computeTimeMs: BigInt(Math.max(0, Math.trunc(event.computeTimeMs))),
            detail: event.detail.slice(0, 512),
          },
          { timeoutMs },
        ),
      );
    },
    async nodeStanding(address) {
      const standing = (await getNode(address))?.standing;
      if (standing === undefined) return undefined;
      return {
        reputation: standing.reputation,
        bannedUntilMs:
          standing.bannedUntil === undefined ? undefined : timestampMs(standing.bannedUntil),
      };
    },
    getNode,
    async getSubnet(subnetId) {
      try {
        const response = await call("registry", () =>
          registry.getSubnet({ protocolVersion: PROTOCOL_VERSION, subnetId }, { timeoutMs }),
        );
        return response.subnet;
      } catch (error) {
        if (error instanceof PeerError && error.code === "not_found") return undefined;
        throw error;
      }
    },
    close() {
      session.abort();
    },
  };
}
