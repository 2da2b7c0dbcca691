// Nonces of one caller are recorded in the order its calls ARRIVE at the runtime, although Connect
// runs a unary call's interceptors only after reading its body and a stream's at once; and a call
// that fails before the interceptor runs does not hold the caller's lane.

import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
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
import { signedRequestHeaders as H } from "./headers.js";
import { createSigningInterceptor } from "./signing-interceptor.js";
import {
  type CapturedRequest,
  captureRequests,
  NotSent,
  newState,
  type ServerState,
  startSignedServer,
} from "./test-signed-server.js";
import type { ArrivalHook, NonceHighWaterStore } from "./verifying-interceptor.js";

const serverKey = generateKeyPair();
const payee = generateKeyPair().address;

/** An in-memory high-water store that tells who waits when a given caller's nonce was recorded. */
function watchedNonceStore() {
  const marks = new Map<string, bigint>();
  const waiters: Array<{ caller: string; nonce: bigint; resolve: () => void }> = [];
  const store: NonceHighWaterStore = {
    async advance(caller, nonce) {
      for (const w of waiters.splice(0)) {
        if (w.caller === caller && w.nonce === nonce) w.resolve();
        else waiters.push(w);
      }
      const mark = marks.get(caller);
      if (mark !== undefined && nonce <= mark) return false;
      marks.set(caller, nonce);
      return true;
    },
  };
  /** Resolves true once `nonce` of `caller` reached the store, or false after `ms`. */
  const recorded = (caller: string, nonce: bigint, ms: number) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      waiters.push({
        caller,
        nonce,
        resolve: () => {
          clearTimeout(timer);
          resolve(true);
        },
      });
    });
  return { store, recorded };
}

/** An interceptor that does nothing but report, through the runtime's arrival hook, what arrived. */
function arrivalWatcher() {
  const waiters = new Map<string, () => void>();
  const onArrival: ArrivalHook = (header) => {
    const nonce = header.get(H.nonce);
    if (nonce !== null) waiters.get(nonce)?.();
    return undefined;
  };
  const interceptor: Interceptor = (next) => (req) => next(req);
  return {
    interceptor: Object.assign(interceptor, { onArrival }),
    /** Resolves once a request with this nonce header arrived (register before sending). */
    arrived: (nonce: string) => new Promise<void>((resolve) => waiters.set(nonce, resolve)),
  };
}

/** A signed Transfer request, captured from a real client and not sent. */
async function captureTransfer(
  url: string,
  signing: Interceptor,
  caller: KeyPair,
  id: string,
): Promise<CapturedRequest> {
  const captured: CapturedRequest[] = [];
  const transport = createConnectTransport({
    baseUrl: url,
    httpVersion: "2",
    interceptors: [signing, captureRequests(captured, false)],
  });
  const request = create(TransferRequestSchema, {
    transferId: id,
    fromAddress: caller.address,
    toAddress: payee,
    amount: "5",
  });
  await assert.rejects(
    createClient(WalletService, transport).transfer(request),
    (error) => ConnectError.from(error).cause instanceof NotSent,
  );
  const first = captured[0];
  assert.ok(first);
  return first;
}

/** A raw Connect unary POST on its own HTTP/2 connection whose body the test sends when it likes. */
function openUnary(url: string, request: CapturedRequest) {
  const session = http2.connect(url);
  const stream = session.request({ ...request.headers, ":method": "POST", ":path": request.path });
  const outcome = new Promise<{ status: number; code?: string; message?: string }>(
    (resolve, reject) => {
      const chunks: Buffer[] = [];
      let status = 0;
      stream.on("response", (h) => {
        status = Number(h[":status"]);
      });
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        if (status === 200) return resolve({ status });
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status, ...(text ? (JSON.parse(text) as object) : {}) });
      });
      stream.on("error", reject);
    },
  );
  outcome.catch(() => {}).finally(() => session.close());
  return { session, stream, outcome };
}

describe("signed calls of one caller, in arrival order", () => {
  let state: ServerState;
  let server: ServiceServer;
  let nonces: ReturnType<typeof watchedNonceStore>;
  let watcher: ReturnType<typeof arrivalWatcher>;

  before(async () => {
    state = newState();
    nonces = watchedNonceStore();
    watcher = arrivalWatcher();
    server = await startSignedServer(
      state,
      { selfAddress: serverKey.address, nonceStore: nonces.store },
      [watcher.interceptor],
    );
  });
  after(() => server.close());

  async function* chunks(): AsyncGenerator<UploadChunksRequest> {
    yield create(UploadChunksRequestSchema, { uploadId: "u", data: new Uint8Array(8).fill(1) });
  }

  const streams: Record<
    string,
    (transport: ReturnType<typeof createConnectTransport>) => Promise<unknown>
  > = {
    "a client stream (UploadChunks)": (t) =>
      createClient(ArtifactService, t).uploadChunks(chunks()),
    "a server stream (DiscoverNodes)": async (t) => {
      const got = [];
      for await (const r of createClient(RegistryService, t).discoverNodes({ maxResults: 2 })) {
        got.push(r);
      }
      return got;
    },
  };

  for (const [name, call] of Object.entries(streams)) {
    it(`a unary call whose body is still arriving is not refused because ${name} made after it went first`, async () => {
      const caller = generateKeyPair();
      const signing = createSigningInterceptor({ keyPair: caller, target: serverKey.address });
      const unaryRequest = await captureTransfer(server.url, signing, caller, `slow-${name}`);
      const transfersBefore = state.transfers;

      // The unary call arrives with half its body; Connect waits for the rest before interceptors.
      const arrived = watcher.arrived(unaryRequest.headers[H.nonce] ?? "");
      const unary = openUnary(server.url, unaryRequest);
      const half = Math.floor(unaryRequest.body.byteLength / 2);
      unary.stream.write(unaryRequest.body.subarray(0, half));
      await arrived;

      // The stream, signed later (a higher nonce), runs its interceptors at once.
      let sentNonce: (nonce: string) => void = () => {};
      const streamNonce = new Promise<string>((resolve) => {
        sentNonce = resolve;
      });
      const transport = createConnectTransport({
        baseUrl: server.url,
        httpVersion: "2",
        interceptors: [
          signing,
          (next) => async (req) => {
            sentNonce(req.header.get(H.nonce) ?? "");
            return next(req);
          },
        ],
      });
      const streamed = call(transport);
      // Give the stream the chance to record its nonce first (it must not, but it did before the
      // runtime joined the caller's lane on arrival); waiting longer only makes the bug likelier.
      await nonces.recorded(caller.address, BigInt(await streamNonce), 500);

      unary.stream.end(unaryRequest.body.subarray(half));
      const [unaryOutcome] = await Promise.all([unary.outcome, streamed]);
      assert.deepEqual(unaryOutcome, { status: 200 }, "the earlier unary call is accepted");
      assert.equal(state.transfers, transfersBefore + 1);
    });
  }

  it("a call that fails before the interceptor runs does not hold the caller's later calls", async () => {
    const caller = generateKeyPair();
    const signing = createSigningInterceptor({ keyPair: caller, target: serverKey.address });
    const wallet = createClient(
      WalletService,
      createConnectTransport({ baseUrl: server.url, httpVersion: "2", interceptors: [signing] }),
    );
    const transfer = (id: string) =>
      wallet.transfer(
        { transferId: id, fromAddress: caller.address, toAddress: payee, amount: "1" },
        { timeoutMs: 20_000 },
      );

    // A body that is not protobuf: Connect fails the call while decoding it.
    const garbage = await captureTransfer(server.url, signing, caller, "garbage");
    const bad = openUnary(server.url, garbage);
    bad.stream.end(Uint8Array.of(0xff, 0xff, 0xff));
    const badOutcome = await bad.outcome;
    assert.equal(badOutcome.code, "invalid_argument");
    await transfer("after-garbage");

    // The same over HTTP/1.1.
    const garbage1 = await captureTransfer(server.url, signing, caller, "garbage-http1");
    const status1 = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${server.url}${garbage1.path}`, {
        method: "POST",
        headers: garbage1.headers,
      });
      req.on("response", (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      req.end(Buffer.from([0xff, 0xff, 0xff]));
    });
    assert.equal(status1, 400, "invalid_argument");
    await transfer("after-garbage-http1");

    // A client that leaves halfway through its body.
    const abandoned = await captureTransfer(server.url, signing, caller, "abandoned");
    const arrived = watcher.arrived(abandoned.headers[H.nonce] ?? "");
    const gone = openUnary(server.url, abandoned);
    gone.stream.write(abandoned.body.subarray(0, 3));
    await arrived;
    gone.stream.close(http2.constants.NGHTTP2_CANCEL);
    await gone.outcome.catch(() => {});
    await transfer("after-abandoned");

    // A call to a method the service does not implement.
    const unimplemented = createClient(
      WalletService,
      createConnectTransport({ baseUrl: server.url, httpVersion: "2", interceptors: [signing] }),
    );
    await assert.rejects(
      unimplemented.createEscrow({}),
      (error: { code?: Code }) => error.code === Code.Unimplemented,
    );
    await transfer("after-unimplemented");
  });
});
