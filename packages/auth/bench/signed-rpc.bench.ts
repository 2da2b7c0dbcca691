/**
 * What signing costs.
 *
 * 1. Per request, the interceptors called directly (no network): the client's signing and the
 *    server's verification, with the nonce high-water mark in memory (the checks alone) and on
 *    SQLite (durable, what a service runs). Wall time one call after another, and CPU time of
 *    every thread (verification runs on libuv's thread pool).
 * 2. Requests/s of a signed unary RPC (WalletService.Transfer) against the same RPC unsigned, on
 *    real runtime servers in this process, Connect over HTTP/2, 64 calls in flight, with CPU time
 *    per request. Variants alternate round by round so that machine noise hits all of them.
 *
 *   pnpm --filter @tessera/auth bench [-- <seconds per run, default 4> <rounds, default 3>]
 *
 * Figures, not assertions: compare runs on the same machine only. Client and server share this
 * process and its cores, so the client's signing counts against the server's throughput too.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  type ConnectRouter,
  createClient,
  createContextValues,
  type Interceptor,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { TransactionRecordSchema } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import {
  type TransferRequest,
  TransferRequestSchema,
  TransferResponseSchema,
  WalletService,
} from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { createLogger, type ServiceServer, startServiceServer } from "@tessera/runtime";
import {
  createNonceStore,
  type NonceStoreTables,
  nonceStoreMigrations,
  openStore,
  type Store,
} from "@tessera/store";
import { callerOf } from "../src/caller.js";
import { createSigningInterceptor } from "../src/signing-interceptor.js";
import {
  createVerifyingInterceptor,
  type NonceHighWaterStore,
} from "../src/verifying-interceptor.js";

const runSeconds = Number(process.argv[2] ?? 4);
const rounds = Number(process.argv[3] ?? 3);
const inFlight = 64;
const serverKey = generateKeyPair();
const payee = generateKeyPair().address;

/** A nonce store in memory: isolates the cost of the checks from the durable write. */
function memoryNonceStore(): NonceHighWaterStore {
  const marks = new Map<string, bigint>();
  return {
    async advance(caller, nonce) {
      const mark = marks.get(caller);
      if (mark !== undefined && nonce <= mark) return false;
      marks.set(caller, nonce);
      return true;
    },
  };
}

function transfer(from: KeyPair, i: number): TransferRequest {
  return create(TransferRequestSchema, {
    transferId: `bench-${i}`,
    fromAddress: from.address,
    toAddress: payee,
    amount: "1000",
    memo: "benchmark transfer",
  });
}

/** A unary Transfer request as interceptors see it. */
function unaryRequest(message: TransferRequest, header: Headers): UnaryRequest {
  return {
    stream: false,
    message,
    method: WalletService.method.transfer,
    service: WalletService,
    requestMethod: "POST",
    url: "http://127.0.0.1/tessera.wallet.v1.WalletService/Transfer",
    signal: new AbortController().signal,
    header,
    contextValues: createContextValues(),
  } as UnaryRequest;
}

function okResponse(req: UnaryRequest): UnaryResponse {
  return {
    stream: false,
    message: create(TransferResponseSchema),
    method: req.method,
    service: req.service,
    header: new Headers(),
    trailer: new Headers(),
  } as UnaryResponse;
}

interface Cost {
  /** Wall time per call, one call after another. */
  wallMicros: number;
  /** CPU time of all threads per call. */
  cpuMicros: number;
}

/** Runs `call` on each of `inputs` in turn (after `warmup` of them) and returns the cost per call. */
async function costPerCall<T>(inputs: T[], warmup: number, call: (input: T) => Promise<unknown>) {
  for (const input of inputs.slice(0, warmup)) await call(input);
  const timed = inputs.slice(warmup);
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  for (const input of timed) await call(input);
  const wall = Number(process.hrtime.bigint() - start) / 1e3;
  const used = process.cpuUsage(cpu);
  return { wallMicros: wall / timed.length, cpuMicros: (used.user + used.system) / timed.length };
}

async function interceptorCosts(store: Store<NonceStoreTables>): Promise<void> {
  const n = 4000;
  const warmup = 500;
  const callers = Array.from({ length: 8 }, generateKeyPair);
  const signers = callers.map((keyPair) =>
    createSigningInterceptor({ keyPair, target: serverKey.address }),
  );
  const requests = Array.from({ length: n }, (_, i) => ({
    signer: signers[i % 8] as Interceptor,
    message: transfer(callers[i % 8] as KeyPair, i),
  }));
  // Sign through the real client interceptor, keeping what it would have sent.
  const signed: UnaryRequest[] = [];
  const sign = await costPerCall(requests, 0, ({ signer, message }) =>
    signer(async (out) => {
      signed.push(out as UnaryRequest);
      return okResponse(out as UnaryRequest);
    })(unaryRequest(message, new Headers())),
  );
  const fresh = () =>
    signed.map((r) => unaryRequest(r.message as TransferRequest, new Headers(r.header)));
  const verifyWith = (nonceStore: NonceHighWaterStore) => {
    const interceptor = createVerifyingInterceptor({ selfAddress: serverKey.address, nonceStore });
    return interceptor(async (req) => okResponse(req as UnaryRequest));
  };
  const memory = await costPerCall(fresh(), warmup, verifyWith(memoryNonceStore()));
  const sqlite = await costPerCall(fresh(), warmup, verifyWith(createNonceStore(store)));

  console.log(`\nPer request, interceptors called directly (${n - warmup} requests, 8 callers):`);
  const row = (label: string, cost: Cost) =>
    console.log(
      `  ${label.padEnd(50)} ${cost.wallMicros.toFixed(0).padStart(5)} µs wall ${cost.cpuMicros.toFixed(0).padStart(5)} µs CPU`,
    );
  row("sign (client)", sign);
  row("verify, nonce high-water in memory (the checks)", memory);
  row("verify, nonce high-water on SQLite (durable)", sqlite);
}

function routes(router: ConnectRouter): void {
  router.service(WalletService, {
    async transfer(req, ctx) {
      return {
        transaction: create(TransactionRecordSchema, {
          transactionId: req.transferId,
          debitAccount: callerOf(ctx) ?? req.fromAddress,
          creditAccount: req.toAddress,
          amount: req.amount,
        }),
      };
    },
  });
}

async function startServer(interceptors: Interceptor[]): Promise<ServiceServer> {
  return startServiceServer({
    service: "auth-bench",
    logger: createLogger({ service: "auth-bench", level: "silent" }),
    host: "127.0.0.1",
    port: 0,
    limits: { maxMessageBytes: 4 << 20, defaultDeadlineMs: 30_000, maxDeadlineMs: 300_000 },
    files: [],
    routes,
    interceptors,
  });
}

interface Throughput {
  requests: number;
  ms: number;
  cpuMicros: number;
}

/** Transfers against `url` for `seconds`, `inFlight` calls at a time. */
async function throughput(
  url: string,
  caller: KeyPair,
  interceptors: Interceptor[],
  seconds: number,
): Promise<Throughput> {
  const client = createClient(
    WalletService,
    createConnectTransport({ baseUrl: url, httpVersion: "2", interceptors }),
  );
  let requests = 0;
  const until = performance.now() + seconds * 1000;
  const worker = async (w: number) => {
    for (let i = 0; performance.now() < until; i++) {
      await client.transfer(transfer(caller, w * 1_000_000 + i));
      requests += 1;
    }
  };
  const cpu = process.cpuUsage();
  const start = performance.now();
  await Promise.all(Array.from({ length: inFlight }, (_, w) => worker(w)));
  const used = process.cpuUsage(cpu);
  return { requests, ms: performance.now() - start, cpuMicros: used.user + used.system };
}

const dir = await mkdtemp(join(tmpdir(), "tessera-auth-bench-"));
const store = await openStore<NonceStoreTables>({
  dataDir: dir,
  fileName: "nonces.sqlite",
  migrations: nonceStoreMigrations,
});
const servers: ServiceServer[] = [];
try {
  console.log(`node ${process.version}, ${process.arch}, ${runSeconds} s runs, ${rounds} rounds`);
  await interceptorCosts(store);

  const verify = (nonceStore: NonceHighWaterStore) =>
    createVerifyingInterceptor({ selfAddress: serverKey.address, nonceStore });
  const caller = generateKeyPair();
  // One signing interceptor (one nonce source) for the key, shared by every signed run.
  const signing = [createSigningInterceptor({ keyPair: caller, target: serverKey.address })];
  const variants = [
    { label: "unsigned", server: await startServer([]), client: [] },
    {
      label: "signed, nonce high-water on SQLite (durable)",
      server: await startServer([verify(createNonceStore(store))]),
      client: signing,
    },
    {
      label: "signed, nonce high-water in memory",
      server: await startServer([verify(memoryNonceStore())]),
      client: signing,
    },
  ];
  servers.push(...variants.map((v) => v.server));
  // Warm-up: connections, JIT, the SQLite table's first pages.
  for (const v of variants) await throughput(v.server.url, caller, v.client, 1);
  const totals = variants.map(() => ({ requests: 0, ms: 0, cpuMicros: 0 }));
  for (let round = 0; round < rounds; round++) {
    for (const [i, v] of variants.entries()) {
      const run = await throughput(v.server.url, caller, v.client, runSeconds);
      const total = totals[i] as Throughput;
      total.requests += run.requests;
      total.ms += run.ms;
      total.cpuMicros += run.cpuMicros;
    }
  }
  console.log(
    `\nWalletService.Transfer, Connect over HTTP/2, ${inFlight} in flight, client and server in this process:`,
  );
  const rps = (t: Throughput) => (t.requests * 1000) / t.ms;
  const base = rps(totals[0] as Throughput);
  for (const [i, v] of variants.entries()) {
    const t = totals[i] as Throughput;
    console.log(
      `  ${v.label.padEnd(46)} ${rps(t).toFixed(0).padStart(6)} req/s  ${(rps(t) / base).toFixed(2)}x  ${(t.cpuMicros / t.requests).toFixed(0).padStart(5)} µs CPU/request`,
    );
  }
} finally {
  await Promise.all(servers.map((s) => s.close()));
  await store.close();
  await rm(dir, { recursive: true, force: true });
}
