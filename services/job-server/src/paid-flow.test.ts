/**
 * A paid job against the real network parts it pays through, each its own process: a wallet, a
 * registry and two validators (the registry binary in its validator role). The job server runs
 * in-process on SQLite; a test node registers with both the registry and the job server.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { JobFailureReason, JobState } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { EscrowState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { createLogger, parseConfig, type ServiceServer } from "@tessera/runtime";
import { loggedAddress, type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";
import { jobServerConfigSpec } from "./config.js";
import { startJobServerServer } from "./server.js";
import {
  FAST_ENV,
  freeSpec,
  predictions,
  type SignedClients,
  signedClients,
  TestNode,
  V1,
} from "./test-support.js";

const registryEntry = fileURLToPath(new URL("../../registry/dist/main.js", import.meta.url));
const walletEntry = fileURLToPath(new URL("../../wallet/dist/main.js", import.meta.url));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

function signed<S extends typeof WalletService | typeof RegistryService>(
  service: S,
  url: string,
  target: string,
  keyPair: KeyPair,
  closers: Array<() => unknown>,
): Client<S> {
  const session = new Http2SessionManager(url);
  closers.push(() => session.abort());
  return createClient(
    service,
    createConnectTransport({
      baseUrl: url,
      httpVersion: "2",
      sessionManager: session,
      interceptors: [
        createSigningInterceptor({ keyPair, target, nonceSource: createNonceSource() }),
      ],
    }),
  );
}

async function eventually<T>(
  read: () => Promise<T>,
  check: (value: T) => boolean,
  timeoutMs = 30_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > deadline) assert.fail("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function rejectsWith(promise: Promise<unknown>, code: Code, message: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, String(error));
    assert.equal(Code[error.code], Code[code], error.rawMessage);
    assert.match(error.rawMessage, message);
    return true;
  });
}

describe("paid jobs through a real wallet, registry and validators", () => {
  const closers: Array<() => unknown> = [];
  const processes: SpawnedService[] = [];
  let dataDir: string;
  let jobServer: ServiceServer;
  let jobServerAddress: string;
  let walletAddress: string;
  let walletUrl: string;
  let registryUrl: string;
  let registryAddress: string;
  let client: SignedClients;
  let wallet: Client<typeof WalletService>;
  let worker: TestNode;
  let registryClient: Client<typeof RegistryService>;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "job-server-paid-"));
    const keyFile = join(dataDir, "job-server-key.json");
    jobServerAddress = (await loadOrCreateServiceKey({ path: keyFile, name: "job-server" })).keyPair
      .address;
    const [walletPort, registryPort] = [await freePort(), await freePort()];
    walletUrl = `http://127.0.0.1:${walletPort}`;
    registryUrl = `http://127.0.0.1:${registryPort}`;
    const walletProcess = await spawnService({
      entry: walletEntry,
      env: {
        PORT: String(walletPort),
        DATA_DIR: join(dataDir, "wallet"),
        FAUCET_ENABLED: "true",
        REGISTRY_URL: registryUrl,
        VALIDATOR_SET_CACHE_MS: "0",
      },
    });
    processes.push(walletProcess);
    walletAddress = loggedAddress(walletProcess);
    const registry = await spawnService({
      entry: registryEntry,
      env: {
        PORT: String(registryPort),
        DATA_DIR: join(dataDir, "registry"),
        POW_DIFFICULTY: "0",
        VALIDATOR_QUORUM: "2",
        TRUSTED_REPORTERS: jobServerAddress,
        WALLET_URL: walletUrl,
        GOSSIP_INTERVAL_MS: "600000",
        HEARTBEAT_TIMEOUT_MS: "600000",
      },
    });
    processes.push(registry);
    registryAddress = loggedAddress(registry);
    for (const name of ["validator-1", "validator-2"]) {
      processes.push(
        await spawnService({
          entry: registryEntry,
          env: {
            REGISTRY_ROLE: "validator",
            DATA_DIR: join(dataDir, name),
            REGISTRY_URL: registryUrl,
            TRUSTED_REGISTRIES: registryAddress,
            TREASURY_ADDRESS: registryAddress,
            POW_DIFFICULTY: "0",
          },
        }),
      );
    }
    const config = parseConfig(jobServerConfigSpec, {
      ...FAST_ENV,
      DATA_DIR: join(dataDir, "job-server"),
      KEY_FILE: keyFile,
      WALLET_URL: walletUrl,
      WALLET_ADDRESS: walletAddress,
      REGISTRY_URL: registryUrl,
      REGISTRY_ADDRESS: registryAddress,
    });
    jobServer = await startJobServerServer(
      config,
      createLogger({ service: "job-server-test", level: "silent" }),
    );
    client = signedClients(jobServer.url, jobServerAddress);
    closers.push(() => client.close());
    wallet = signed(WalletService, walletUrl, walletAddress, client.keyPair, closers);
    await wallet.faucet({
      protocolVersion: V1,
      transferId: "fund-client",
      address: client.keyPair.address,
      amount: "100000",
    });

    // The node hosts the model in the registry's directory (validators route to it) and
    // registers with the job server.
    worker = new TestNode(jobServer.url, jobServerAddress, {
      pricePerHour: "6000",
      models: ["iris-mlp"],
      keyPair: generateKeyPair(),
    });
    closers.push(() => worker.close());
    await worker.register();
    registryClient = signed(
      RegistryService,
      registryUrl,
      registryAddress,
      worker.clients.keyPair,
      closers,
    );
    await registryClient.registerNode({ protocolVersion: V1, record: worker.record });
    await registryClient.updateNodeHeartbeat({
      protocolVersion: V1,
      nodeAddress: worker.address,
      load: { freeSlots: 1 },
    });
  });

  after(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await jobServer?.close();
    for (const process of processes.reverse()) await process.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  async function escrow(escrowId: string, jobId: string, amount: string) {
    await wallet.createEscrow({
      protocolVersion: V1,
      escrowId,
      jobId,
      payerAddress: client.keyPair.address,
      amount,
      arbiterAddress: jobServerAddress,
      expiresAt: timestampFromMs(Date.now() + 2 * 3_600_000),
    });
  }

  function paidSpec(jobId: string, escrowId: string, extra: Parameters<typeof freeSpec>[1] = {}) {
    return freeSpec(jobId, {
      paymentAmount: "1000",
      payerAddress: client.keyPair.address,
      escrowId,
      estimatedDurationMs: 60_000n,
      expiresAt: timestampFromMs(Date.now() + 3_600_000),
      ...extra,
    });
  }

  test("an escrow that does not fit the job is refused and nothing is stored", async () => {
    await rejectsWith(
      client.jobs.submitJob({ protocolVersion: V1, spec: paidSpec("paid-missing", "esc-missing") }),
      Code.FailedPrecondition,
      /spec\.escrow_id: escrow esc-missing does not exist/,
    );
    await escrow("esc-other", "another-job", "1000");
    await rejectsWith(
      client.jobs.submitJob({ protocolVersion: V1, spec: paidSpec("paid-wrong", "esc-other") }),
      Code.FailedPrecondition,
      /bound to job "another-job"/,
    );
    await escrow("esc-small", "paid-small", "999");
    await rejectsWith(
      client.jobs.submitJob({ protocolVersion: V1, spec: paidSpec("paid-small", "esc-small") }),
      Code.FailedPrecondition,
      /spec\.payment_amount/,
    );
    await rejectsWith(
      client.jobs.getJobStatus({ protocolVersion: V1, jobId: "paid-small" }),
      Code.NotFound,
      /paid-small/,
    );
  });

  test("validators approve the route, the node runs the job, the escrow is released", async () => {
    await escrow("esc-paid-1", "paid-1", "1000");
    await worker.openStreamReady();
    const submitted = await client.jobs.submitJob({
      protocolVersion: V1,
      spec: paidSpec("paid-1", "esc-paid-1"),
    });
    assert.equal(submitted.created, true);
    const assignment = await worker.nextAssignment(20_000);
    const terms = assignment.approval?.terms;
    assert.equal(terms?.requestId, "paid-1");
    assert.equal(terms?.route?.computeNodeAddress, worker.address);
    assert.equal(terms?.route?.gatewayAddress, jobServerAddress);
    assert.ok((assignment.approval?.validatorSignatures.length ?? 0) >= 2);

    const answer = await worker.run(assignment, [predictions()]);
    assert.ok(
      answer.status?.state === JobState.VALIDATING || answer.status?.state === JobState.COMPLETED,
    );
    const done = await eventually(
      () => client.jobs.getJobStatus({ protocolVersion: V1, jobId: "paid-1" }),
      (status) => status.status?.state === JobState.COMPLETED,
    );
    assert.notEqual(done.result?.settlementTransactionId, "");
    assert.equal(done.result?.completionValidation?.terms?.approved, true);
    const { escrow: settled } = await wallet.getEscrow({
      protocolVersion: V1,
      escrowId: "esc-paid-1",
    });
    assert.equal(settled?.state, EscrowState.RELEASED);
    const nodeWallet = signed(
      WalletService,
      walletUrl,
      walletAddress,
      worker.clients.keyPair,
      closers,
    );
    const balance = await nodeWallet.getBalance({ protocolVersion: V1, address: worker.address });
    assert.equal(balance.available, terms?.paymentTree?.computeAmount);
    const metrics = await worker.clients.nodes.getNodeMetrics({
      protocolVersion: V1,
      nodeAddress: worker.address,
    });
    assert.equal(metrics.earnedAmount, terms?.paymentTree?.computeAmount);
    // The registry heard that the node completed a job (best effort, in the background).
    await eventually(
      () => registryClient.getNode({ protocolVersion: V1, nodeAddress: worker.address }),
      (answer) => (answer.node?.standing?.jobsCompleted ?? 0n) >= 1n,
    );
  });

  test("a route the validators refuse leaves their reason on the queued job", async () => {
    // The only node offering the runtime this job needs is unknown to the registry: the scheduler
    // places the job there, the validators refuse the route, and the job waits saying why.
    const stranger = new TestNode(jobServer.url, jobServerAddress, {
      pricePerHour: "6000",
      runtimes: ["stranger-runtime"],
      keyPair: generateKeyPair(),
    });
    closers.push(() => stranger.close());
    await stranger.register();
    await stranger.openStreamReady();
    await escrow("esc-refused-1", "refused-1", "1000");
    await client.jobs.submitJob({
      protocolVersion: V1,
      spec: paidSpec("refused-1", "esc-refused-1", { requiredRuntime: "stranger-runtime" }),
    });
    const waiting = await eventually(
      () => client.jobs.getJobStatus({ protocolVersion: V1, jobId: "refused-1" }),
      (status) => /validators did not approve/.test(status.status?.errorMessage ?? ""),
    );
    assert.equal(waiting.status?.state, JobState.QUEUED);
    assert.match(waiting.status?.errorMessage ?? "", new RegExp(stranger.address));
    // Later passes of the dispatcher do not replace it with a generic "no node may run it".
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const later = await client.jobs.getJobStatus({ protocolVersion: V1, jobId: "refused-1" });
    assert.match(later.status?.errorMessage ?? "", /validators did not approve/);
    await client.jobs.cancelJob({ protocolVersion: V1, jobId: "refused-1", reason: "test over" });
  });

  test("cancelling a paid job refunds its escrow", async () => {
    await escrow("esc-paid-2", "paid-2", "1000");
    await client.jobs.submitJob({
      protocolVersion: V1,
      // No node offers this runtime: the job waits in the queue.
      spec: paidSpec("paid-2", "esc-paid-2", { requiredRuntime: "nowhere" }),
    });
    const cancelled = await client.jobs.cancelJob({ protocolVersion: V1, jobId: "paid-2" });
    assert.equal(cancelled.status?.state, JobState.CANCELLED);
    assert.equal(cancelled.refundIssued, true);
    assert.notEqual(cancelled.refundTransactionId, "");
    const { escrow: refunded } = await wallet.getEscrow({
      protocolVersion: V1,
      escrowId: "esc-paid-2",
    });
    assert.equal(refunded?.state, EscrowState.REFUNDED);
    const again = await client.jobs.cancelJob({ protocolVersion: V1, jobId: "paid-2" });
    assert.equal(again.refundTransactionId, cancelled.refundTransactionId);
    assert.equal(again.status?.failureReason, JobFailureReason.UNSPECIFIED);
  });
});
