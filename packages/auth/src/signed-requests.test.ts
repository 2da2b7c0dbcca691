import assert from "node:assert/strict";
import { it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { fromHex } from "@tessera/identity/hash";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import { verifyRequestSignature } from "@tessera/identity/request-signing";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "@tessera/proto/grpc/health/v1/health_pb.js";
import {
  ArtifactService,
  type UploadChunksRequest,
  UploadChunksRequestSchema,
} from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import {
  TransferRequestSchema,
  WalletService,
} from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import type { ServiceServer } from "@tessera/runtime";
import {
  createNonceStore,
  type NonceStore,
  type NonceStoreTables,
  nonceStoreMigrations,
  type Store,
} from "@tessera/store";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import { signedRequestHeaders as H } from "./headers.js";
import { createSigningInterceptor, type SigningInterceptorOptions } from "./signing-interceptor.js";
import {
  type CapturedRequest,
  captureRequests,
  mistyped,
  NotSent,
  newState,
  replayRaw,
  type ServerState,
  startSignedServer,
  transports,
} from "./test-signed-server.js";
import type { CallerStanding, VerifyingInterceptorOptions } from "./verifying-interceptor.js";

const serverKey = generateKeyPair();
const payee = generateKeyPair().address;
const msToNs = (ms: number) => BigInt(Math.round(ms)) * 1_000_000n;
const nowNs = () => msToNs(Date.now());

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  assert.fail("expected the call to be rejected");
}

function transferRequest(from: KeyPair, id = "t-1", amount = "5") {
  return create(TransferRequestSchema, {
    transferId: id,
    fromAddress: from.address,
    toAddress: payee,
    amount,
  });
}

/** An interceptor that changes the request after it was signed. */
function tamper(change: (header: Headers) => void): Interceptor {
  return (next) => async (req) => {
    change(req.header);
    return next(req);
  };
}

interface Harness {
  readonly state: ServerState;
  readonly server: ServiceServer;
  readonly store: Store<NonceStoreTables>;
  readonly nonces: NonceStore;
  readonly standings: Map<string, CallerStanding>;
  /** A Connect-over-HTTP/2 client signing as `keyPair` (for this server unless `target` says). */
  wallet(
    signing: Partial<SigningInterceptorOptions> & { keyPair: KeyPair },
    inner?: Interceptor[],
  ): ReturnType<typeof createClient<typeof WalletService>>;
  close(): Promise<void>;
}

async function startHarness(
  backend: StoreBackend,
  options: Partial<VerifyingInterceptorOptions> = {},
  space = "main",
): Promise<Harness> {
  const state = newState();
  const store = await backend.open<NonceStoreTables>({ migrations: nonceStoreMigrations, space });
  const nonces = createNonceStore(store);
  const standings = new Map<string, CallerStanding>();
  const server = await startSignedServer(state, {
    selfAddress: serverKey.address,
    nonceStore: nonces,
    authorizeCaller: async (caller) => standings.get(caller) ?? "ok",
    ...options,
  });
  return {
    state,
    server,
    store,
    nonces,
    standings,
    wallet(signing, inner = []) {
      const interceptors = [
        createSigningInterceptor({ target: serverKey.address, ...signing }),
        ...inner,
      ];
      const transport = createConnectTransport({
        baseUrl: server.url,
        httpVersion: "2",
        interceptors,
      });
      return createClient(WalletService, transport);
    },
    close: () => server.close(),
  };
}

/** One way to break a signed Transfer, sent after an accepted one from the same caller. */
interface RejectionCase {
  readonly name: string;
  readonly code: Code;
  /** The check the message must name. */
  readonly message: RegExp;
  /** Sign with this key instead of the caller's (the caller header still names the caller). */
  readonly otherSigner?: boolean;
  readonly target?: string;
  readonly nonce?: () => bigint;
  /** The caller's standing from now on. */
  readonly standing?: CallerStanding;
  /** Runs on the request after signing. */
  readonly tamper?: (header: Headers, caller: KeyPair) => void;
  /** Changes the message after signing. */
  readonly changeBody?: boolean;
}

const rejections: RejectionCase[] = [
  {
    name: "no caller header",
    code: Code.Unauthenticated,
    message: /missing caller/,
    tamper: (h) => h.delete(H.caller),
  },
  {
    name: "a caller that is not an address (typo)",
    code: Code.Unauthenticated,
    message: /invalid caller address/,
    tamper: (h, caller) => h.set(H.caller, mistyped(caller)),
  },
  {
    name: "a blacklisted caller, even without a signature",
    code: Code.PermissionDenied,
    message: /caller is blacklisted/,
    standing: "blacklisted",
    tamper: (h) => h.delete(H.signature),
  },
  {
    name: "an unregistered caller where registration is required, with a garbage signature",
    code: Code.PermissionDenied,
    message: /caller is not registered/,
    standing: "unregistered",
    tamper: (h) => h.set(H.signature, "zz"),
  },
  {
    name: "no signature header",
    code: Code.Unauthenticated,
    message: /missing signature/,
    tamper: (h) => h.delete(H.signature),
  },
  {
    name: "an empty signature (Bittensor #3392 accepted it)",
    code: Code.Unauthenticated,
    message: /missing signature/,
    tamper: (h) => h.set(H.signature, ""),
  },
  {
    name: "signed for another server",
    code: Code.Unauthenticated,
    message: /wrong target/,
    target: generateKeyPair().address,
  },
  {
    name: "a nonce older than clock skew + deadline",
    code: Code.Unauthenticated,
    message: /nonce outside window/,
    nonce: () => nowNs() - msToNs(10 * 60_000),
  },
  {
    name: "a nonce too far in the future (would poison the high-water mark)",
    code: Code.Unauthenticated,
    message: /nonce outside window/,
    nonce: () => nowNs() + msToNs(10 * 60_000),
  },
  {
    name: "a nonce that is not a decimal number",
    code: Code.Unauthenticated,
    message: /invalid nonce/,
    tamper: (h) => h.set(H.nonce, "0x1f"),
  },
  {
    name: "no body hash",
    code: Code.Unauthenticated,
    message: /missing body hash/,
    tamper: (h) => h.delete(H.bodyHash),
  },
  {
    name: "a body changed after signing",
    code: Code.Unauthenticated,
    message: /body hash mismatch/,
    changeBody: true,
  },
  {
    name: "a body hash of another body, consistently re-signed by nobody",
    code: Code.Unauthenticated,
    message: /body hash mismatch/,
    tamper: (h) => h.set(H.bodyHash, "00".repeat(32)),
  },
  {
    name: "a request id that the canonical message cannot hold",
    code: Code.Unauthenticated,
    message: /invalid request fields: requestId/,
    tamper: (h) => h.set(H.requestId, "a.b"),
  },
  {
    name: "a signature with one bit flipped",
    code: Code.Unauthenticated,
    message: /bad signature/,
    tamper: (h) => {
      const sig = fromHex(h.get(H.signature) ?? "");
      sig[10] = (sig[10] as number) ^ 1;
      h.set(H.signature, Buffer.from(sig).toString("hex"));
    },
  },
  {
    name: "a request id changed after signing",
    code: Code.Unauthenticated,
    message: /bad signature/,
    tamper: (h) => h.set(H.requestId, "another-id"),
  },
  {
    name: "a valid signature by another key claiming to be the caller",
    code: Code.Unauthenticated,
    message: /bad signature/,
    otherSigner: true,
    tamper: (h, caller) => h.set(H.caller, caller.address),
  },
  {
    name: "a stale nonce below the caller's high-water mark, inside the window",
    code: Code.Unauthenticated,
    message: /replayed or stale nonce/,
    nonce: () => nowNs() - msToNs(5_000),
  },
];

await describeEachStore("signed requests", (backend) => {
  for (const c of rejections) {
    it(`rejects ${c.name}, with no side effect`, async () => {
      const h = await startHarness(backend);
      try {
        const caller = generateKeyPair();
        const nonceSource = createNonceSource();
        await h.wallet({ keyPair: caller, nonceSource }).transfer(transferRequest(caller, "t-1"));
        const highWater = await h.nonces.highWater(caller.address);
        assert.ok(highWater !== undefined);
        if (c.standing) h.standings.set(caller.address, c.standing);

        const inner: Interceptor[] = [];
        if (c.tamper) {
          const change = c.tamper;
          inner.push(tamper((header) => change(header, caller)));
        }
        if (c.changeBody) {
          inner.push((next) => async (req) => {
            if (req.stream) throw new Error("unary only");
            return next({ ...req, message: transferRequest(caller, "t-2", "5000000") });
          });
        }
        const client = h.wallet(
          {
            keyPair: c.otherSigner ? generateKeyPair() : caller,
            nonceSource: c.nonce ?? nonceSource,
            ...(c.target ? { target: c.target } : {}),
          },
          inner,
        );
        const error = await rejection(client.transfer(transferRequest(caller, "t-2")));
        assert.equal(error.code, c.code, error.message);
        assert.match(error.rawMessage, c.message);
        assert.match(error.rawMessage, /^signed request rejected: /);
        assert.equal(h.state.transfers, 1, "the handler must not run");
        assert.equal(await h.nonces.highWater(caller.address), highWater, "high-water moved");
      } finally {
        await h.close();
      }
    });
  }

  it("an unsigned call to a state-changing RPC is rejected before the handler", async () => {
    const h = await startHarness(backend);
    try {
      const transport = createConnectTransport({ baseUrl: h.server.url, httpVersion: "2" });
      const caller = generateKeyPair();
      const error = await rejection(
        createClient(WalletService, transport).transfer(transferRequest(caller)),
      );
      assert.equal(error.code, Code.Unauthenticated);
      assert.match(error.rawMessage, /missing caller/);
      assert.equal(h.state.transfers, 0);
    } finally {
      await h.close();
    }
  });

  it("accepts signed calls over Connect, gRPC and gRPC-Web and hands the caller to the handler", async () => {
    const h = await startHarness(backend);
    try {
      const caller = generateKeyPair();
      const signing = createSigningInterceptor({ keyPair: caller, target: serverKey.address });
      let n = 0;
      for (const [name, transport] of Object.entries(transports(h.server.url, [signing]))) {
        n += 1;
        const res = await createClient(WalletService, transport).transfer(
          transferRequest(caller, `t-${n}`),
        );
        assert.equal(res.transaction?.debitAccount, caller.address, name);
      }
      assert.equal(h.state.transfers, n);
      assert.deepEqual(h.state.callers, Array(n).fill(caller.address));
    } finally {
      await h.close();
    }
  });

  it("signs exactly the canonical message of @tessera/identity", async () => {
    const caller = generateKeyPair();
    const captured: CapturedRequest[] = [];
    const transport = createConnectTransport({
      baseUrl: "http://127.0.0.1:9",
      httpVersion: "2",
      interceptors: [
        createSigningInterceptor({ keyPair: caller, target: serverKey.address }),
        captureRequests(captured, false),
      ],
    });
    await assert.rejects(
      createClient(WalletService, transport).transfer(transferRequest(caller)),
      (error) => ConnectError.from(error).cause instanceof NotSent || error instanceof NotSent,
    );
    const headers = captured[0]?.headers ?? {};
    const fields = {
      nonce: headers[H.nonce] ?? "",
      caller: headers[H.caller] ?? "",
      target: headers[H.target] ?? "",
      requestId: headers[H.requestId] ?? "",
      bodyHash: fromHex(headers[H.bodyHash] ?? "", 32),
    };
    assert.equal(fields.caller, caller.address);
    assert.equal(fields.target, serverKey.address);
    const signature = fromHex(headers[H.signature] ?? "", 64);
    assert.ok(verifyRequestSignature(fields, signature), "identity's verifier accepts it");
    assert.ok(!verifyRequestSignature({ ...fields, requestId: "other" }, signature));
  });

  it("the nonce window is clock skew plus the call's deadline (Connect and gRPC headers)", async () => {
    // The server's clock runs 20 s ahead of the client's; 1 s of skew is allowed.
    const h = await startHarness(backend, {
      clockSkewMs: 1_000,
      now: () => nowNs() + msToNs(20_000),
    });
    try {
      const caller = generateKeyPair();
      const signing = createSigningInterceptor({ keyPair: caller, target: serverKey.address });
      const clients = {
        connect: createClient(
          WalletService,
          createConnectTransport({
            baseUrl: h.server.url,
            httpVersion: "2",
            interceptors: [signing],
          }),
        ),
        grpc: createClient(
          WalletService,
          createGrpcTransport({ baseUrl: h.server.url, interceptors: [signing] }),
        ),
      };
      let id = 0;
      for (const [name, client] of Object.entries(clients)) {
        await client.transfer(transferRequest(caller, `t-${++id}`), { timeoutMs: 60_000 });
        const short = await rejection(
          client.transfer(transferRequest(caller, `t-${++id}`), { timeoutMs: 5_000 }),
        );
        assert.equal(short.code, Code.Unauthenticated, name);
        assert.match(short.rawMessage, /nonce outside window/, name);
        // No deadline from the client: the runtime gives the call its default (30 s here).
        await client.transfer(transferRequest(caller, `t-${++id}`));
      }
      assert.equal(h.state.transfers, 4);
    } finally {
      await h.close();
    }
  });

  it("64 concurrent signed calls of one caller are all accepted, in nonce order", async () => {
    const h = await startHarness(backend);
    try {
      const caller = generateKeyPair();
      const wallet = h.wallet({ keyPair: caller });
      await Promise.all(
        Array.from({ length: 64 }, (_, i) => wallet.transfer(transferRequest(caller, `t-${i}`))),
      );
      assert.equal(h.state.transfers, 64);
    } finally {
      await h.close();
    }
  });

  it("a captured request replayed sequentially is rejected", async () => {
    const h = await startHarness(backend);
    try {
      const caller = generateKeyPair();
      const captured: CapturedRequest[] = [];
      await h
        .wallet({ keyPair: caller }, [captureRequests(captured, true)])
        .transfer(transferRequest(caller));
      assert.equal(h.state.transfers, 1);
      const request = captured[0];
      assert.ok(request);
      for (let i = 0; i < 3; i++) {
        const [outcome] = await replayRaw(h.server.url, request);
        assert.equal(outcome?.code, "unauthenticated");
        assert.match(outcome?.message ?? "", /replayed or stale nonce/);
      }
      assert.equal(h.state.transfers, 1);
    } finally {
      await h.close();
    }
  });

  it("a captured request sent 100 times in parallel is accepted exactly once", async () => {
    const h = await startHarness(backend);
    try {
      const caller = generateKeyPair();
      const captured: CapturedRequest[] = [];
      const client = h.wallet({ keyPair: caller }, [captureRequests(captured, false)]);
      await assert.rejects(client.transfer(transferRequest(caller)));
      const request = captured[0];
      assert.ok(request);
      assert.equal(h.state.transfers, 0, "capturing did not send it");

      const outcomes = await replayRaw(h.server.url, request, 100);
      const accepted = outcomes.filter((o) => o.status === 200);
      const replays = outcomes.filter((o) => /replayed or stale nonce/.test(o.message ?? ""));
      assert.equal(accepted.length, 1);
      assert.equal(replays.length, 99);
      assert.ok(replays.every((o) => o.code === "unauthenticated"));
      assert.equal(h.state.transfers, 1);
    } finally {
      await h.close();
    }
  });

  it("a captured request replayed after a server restart on the same store is rejected", async () => {
    const space = "restart";
    const caller = generateKeyPair();
    const nonceSource = createNonceSource();
    const captured: CapturedRequest[] = [];
    const first = await startHarness(backend, {}, space);
    try {
      await first
        .wallet({ keyPair: caller, nonceSource }, [captureRequests(captured, true)])
        .transfer(transferRequest(caller));
      assert.equal(first.state.transfers, 1);
    } finally {
      await first.close();
      await first.store.close();
    }
    const request = captured[0];
    assert.ok(request);

    const second = await startHarness(backend, {}, space);
    try {
      const [outcome] = await replayRaw(second.server.url, request);
      assert.equal(outcome?.code, "unauthenticated");
      assert.match(outcome?.message ?? "", /replayed or stale nonce/);
      assert.equal(second.state.transfers, 0);
      // The caller itself carries on.
      await second
        .wallet({ keyPair: caller, nonceSource })
        .transfer(transferRequest(caller, "t-2"));
      assert.equal(second.state.transfers, 1);
    } finally {
      await second.close();
    }
  });

  it("reads marked NO_SIDE_EFFECTS stay open; a signed read names its caller; a bad one fails", async () => {
    const h = await startHarness(backend);
    try {
      const anonymous = createClient(
        WalletService,
        createConnectTransport({ baseUrl: h.server.url, httpVersion: "2" }),
      );
      const balance = await anonymous.getBalance({ address: payee });
      assert.equal(balance.address, payee);
      assert.deepEqual(h.state.callers, [undefined]);

      const caller = generateKeyPair();
      await h.wallet({ keyPair: caller }).getBalance({ address: payee });
      assert.deepEqual(h.state.callers, [undefined, caller.address]);

      const forged = h.wallet({ keyPair: caller }, [tamper((hd) => hd.set(H.signature, ""))]);
      const error = await rejection(forged.getBalance({ address: payee }));
      assert.equal(error.code, Code.Unauthenticated);
      assert.match(error.rawMessage, /missing signature/);
      assert.equal(h.state.callers.length, 2);
    } finally {
      await h.close();
    }
  });

  it("gRPC health stays open behind the verifying interceptor", async () => {
    const h = await startHarness(backend);
    try {
      const health = createClient(Health, createGrpcTransport({ baseUrl: h.server.url }));
      const res = await health.check({ service: "" });
      assert.equal(res.status, ServingStatus.SERVING);
    } finally {
      await h.close();
    }
  });

  it("signs and verifies a server-streaming call by its request message", async () => {
    const h = await startHarness(backend);
    try {
      const caller = generateKeyPair();
      const signing = createSigningInterceptor({ keyPair: caller, target: serverKey.address });
      for (const [name, transport] of Object.entries(transports(h.server.url, [signing]))) {
        const registry = createClient(RegistryService, transport);
        let received = 0;
        for await (const _ of registry.discoverNodes({ maxResults: 3 })) received += 1;
        assert.equal(received, 3, name);
      }
      assert.equal(h.state.callers.length, 4);
      assert.ok(h.state.callers.every((c) => c === caller.address));

      const changed = createConnectTransport({
        baseUrl: h.server.url,
        httpVersion: "2",
        interceptors: [
          signing,
          (next) => async (req) => {
            if (!req.stream) throw new Error("stream expected");
            async function* other() {
              yield create(RegistryService.method.discoverNodes.input, { maxResults: 50 });
            }
            return next({ ...req, message: other() });
          },
        ],
      });
      const error = await rejection(
        (async () => {
          for await (const _ of createClient(RegistryService, changed).discoverNodes({
            maxResults: 1,
          })) {
            // drain
          }
        })(),
      );
      assert.equal(error.code, Code.Unauthenticated);
      assert.match(error.rawMessage, /body hash mismatch/);
      assert.equal(h.state.callers.length, 4, "the handler did not run");
    } finally {
      await h.close();
    }
  });

  it("signs a client stream by its first message; the rest rides on the stream", async () => {
    const h = await startHarness(backend);
    try {
      const caller = generateKeyPair();
      const signing = createSigningInterceptor({ keyPair: caller, target: serverKey.address });
      const chunk = (offset: number, size: number) =>
        create(UploadChunksRequestSchema, {
          uploadId: "u-1",
          offset: BigInt(offset),
          data: new Uint8Array(size).fill(7),
        });
      async function* chunks(): AsyncGenerator<UploadChunksRequest> {
        yield chunk(0, 10);
        yield chunk(10, 20);
        yield chunk(30, 5);
      }
      async function* none(): AsyncGenerator<UploadChunksRequest> {}
      for (const [name, transport] of Object.entries({
        "Connect over HTTP/2": createConnectTransport({
          baseUrl: h.server.url,
          httpVersion: "2",
          interceptors: [signing],
        }),
        "gRPC over HTTP/2": createGrpcTransport({ baseUrl: h.server.url, interceptors: [signing] }),
      })) {
        const artifacts = createClient(ArtifactService, transport);
        const res = await artifacts.uploadChunks(chunks());
        assert.equal(res.committedOffset, 35n, name);
        const empty = await artifacts.uploadChunks(none());
        assert.equal(empty.committedOffset, 0n, `${name}: a stream without messages`);
      }
      assert.equal(h.state.chunks, 6);

      const swapped = createConnectTransport({
        baseUrl: h.server.url,
        httpVersion: "2",
        interceptors: [
          signing,
          (next) => async (req) => {
            if (!req.stream) throw new Error("stream expected");
            async function* other() {
              yield chunk(0, 11);
            }
            return next({ ...req, message: other() });
          },
        ],
      });
      const error = await rejection(createClient(ArtifactService, swapped).uploadChunks(chunks()));
      assert.equal(error.code, Code.Unauthenticated);
      assert.match(error.rawMessage, /body hash mismatch/);
      assert.equal(h.state.chunks, 6, "the handler read nothing");
    } finally {
      await h.close();
    }
  });
});
