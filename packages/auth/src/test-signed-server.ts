// Test-only: a runtime server (real, port 0) with the verifying interceptor in front of small real
// implementations of a few Tessera RPCs, backed by in-test counters; plus raw HTTP/2 replay.

import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import type { ConnectRouter, Interceptor, Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import type { KeyPair } from "@tessera/identity/keys";
import { ArtifactService } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import {
  NodeEntrySchema,
  RegistryService,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { TransactionRecordSchema } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { createLogger, type ServiceServer, startServiceServer } from "@tessera/runtime";
import { callerOf, requireCaller } from "./caller.js";
import {
  createVerifyingInterceptor,
  type VerifyingInterceptorOptions,
} from "./verifying-interceptor.js";

/** What the handlers did: the side effects a rejected call must not have. */
export interface ServerState {
  /** Transfers executed. */
  transfers: number;
  /** Verified callers seen by handlers, in order (undefined for an unsigned read). */
  callers: Array<string | undefined>;
  /** Chunks received by UploadChunks. */
  chunks: number;
}

export function newState(): ServerState {
  return { transfers: 0, callers: [], chunks: 0 };
}

/** WalletService.Transfer / GetBalance, RegistryService.DiscoverNodes, ArtifactService.UploadChunks. */
function routes(state: ServerState) {
  return (router: ConnectRouter) => {
    router.service(WalletService, {
      async transfer(req, ctx) {
        const caller = requireCaller(ctx);
        state.callers.push(caller);
        state.transfers += 1;
        return {
          transaction: create(TransactionRecordSchema, {
            transactionId: req.transferId,
            debitAccount: caller,
            creditAccount: req.toAddress,
            amount: req.amount,
          }),
        };
      },
      async getBalance(req, ctx) {
        state.callers.push(callerOf(ctx));
        return { address: req.address, available: String(state.transfers) };
      },
    });
    router.service(RegistryService, {
      async *discoverNodes(req, ctx) {
        state.callers.push(requireCaller(ctx));
        for (let i = 0; i < Math.max(1, req.maxResults); i++) {
          yield { node: create(NodeEntrySchema, {}) };
        }
      },
    });
    router.service(ArtifactService, {
      async uploadChunks(requests, ctx) {
        state.callers.push(requireCaller(ctx));
        let offset = 0n;
        for await (const chunk of requests) {
          state.chunks += 1;
          offset += BigInt(chunk.data.length);
        }
        return { committedOffset: offset };
      },
    });
  };
}

/** Default limits of the test servers: every call gets a 30 s deadline unless it asks for less. */
export const testLimits = {
  maxMessageBytes: 4 * 1024 * 1024,
  defaultDeadlineMs: 30_000,
  maxDeadlineMs: 300_000,
};

/** Starts a real server on port 0 whose only application interceptor verifies signed requests. */
export async function startSignedServer(
  state: ServerState,
  verifying: VerifyingInterceptorOptions,
  interceptors: Interceptor[] = [],
): Promise<ServiceServer> {
  return startServiceServer({
    service: "auth-test",
    logger: createLogger({ service: "auth-test", level: "silent" }),
    host: "127.0.0.1",
    port: 0,
    limits: testLimits,
    files: [],
    routes: routes(state),
    interceptors: [createVerifyingInterceptor(verifying), ...interceptors],
  });
}

/** Client transports of every protocol the runtime serves, with `interceptors`. */
export function transports(
  baseUrl: string,
  interceptors: Interceptor[],
): Record<string, Transport> {
  return {
    "Connect over HTTP/2": createConnectTransport({ baseUrl, httpVersion: "2", interceptors }),
    "Connect over HTTP/1.1": createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors }),
    "gRPC over HTTP/2": createGrpcTransport({ baseUrl, interceptors }),
    "gRPC-Web over HTTP/1.1": createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors }),
  };
}

/** A request exactly as a client interceptor saw it just before the transport sent it. */
export interface CapturedRequest {
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
}

/** Thrown by a capture interceptor that keeps the request from being sent. */
export class NotSent extends Error {}

/**
 * An innermost client interceptor (put it after the signing one) that records each unary request
 * (headers and the message's binary encoding, which is what the Connect transport sends) into
 * `into`; with `send: false` it stops the request there, so its nonce stays unused.
 */
export function captureRequests(into: CapturedRequest[], send: boolean): Interceptor {
  return (next) => async (req) => {
    if (req.stream) throw new Error("capture handles unary calls only");
    into.push({
      path: new URL(req.url).pathname,
      headers: Object.fromEntries(req.header.entries()),
      body: toBinary(req.method.input, req.message),
    });
    if (!send) throw new NotSent("captured, not sent");
    return next(req);
  };
}

/** The outcome of a raw Connect unary call: HTTP status and, for an error, its code and message. */
export interface RawOutcome {
  readonly status: number;
  readonly code: string | undefined;
  readonly message: string | undefined;
}

/**
 * Sends `request` `times` times at once, as raw Connect unary POSTs on one HTTP/2 connection, and
 * returns the outcomes (in sending order).
 */
export async function replayRaw(
  baseUrl: string,
  request: CapturedRequest,
  times = 1,
): Promise<RawOutcome[]> {
  const session = http2.connect(baseUrl);
  try {
    const one = () =>
      new Promise<RawOutcome>((resolve, reject) => {
        const stream = session.request({
          ...request.headers,
          ":method": "POST",
          ":path": request.path,
        });
        const chunks: Buffer[] = [];
        let status = 0;
        stream.on("response", (h) => {
          status = Number(h[":status"]);
        });
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          if (status === 200) return resolve({ status, code: undefined, message: undefined });
          const error = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
            code?: string;
            message?: string;
          };
          resolve({ status, code: error.code, message: error.message });
        });
        stream.on("error", reject);
        stream.end(request.body);
      });
    return await Promise.all(Array.from({ length: times }, one));
  } finally {
    session.close();
  }
}

/** The key pair's address with one data character changed: fails the checksum. */
export function mistyped(keyPair: KeyPair): string {
  const address = keyPair.address;
  const i = address.length - 10;
  return address.slice(0, i) + (address[i] === "q" ? "p" : "q") + address.slice(i + 1);
}
