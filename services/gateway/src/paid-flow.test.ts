// The gateway on the paid default subnet with a REAL wallet, registry and validators (their built
// dist/main.js as processes: `pnpm --filter @tessera/wallet --filter @tessera/registry build`
// first); the gateway runs in this process. Compute nodes are played by the test: they register
// with the registry (so validators route to them) and with the gateway, and sign their results.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { RAW_TENSORS_MEDIA_TYPE } from "@tessera/ml/tensors";
import { InferenceTaskState } from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import {
  RegistryService,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { EscrowState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";
import { PROTOCOL_VERSION } from "./protocol-version.js";
import {
  affineInput,
  eventually,
  floatsOf,
  hostExampleModel,
  signedClient,
  startTestGateway,
  TEST_POW,
  type TestGateway,
  TestNode,
} from "./test-support.js";

const entry = (name: string) =>
  fileURLToPath(new URL(`../../${name}/dist/main.js`, import.meta.url));
for (const name of ["wallet", "registry"]) {
  if (!existsSync(entry(name))) {
    throw new Error(`${entry(name)} is missing: run \`pnpm --filter @tessera/${name} build\``);
  }
}

const exampleModelsDir = fileURLToPath(new URL("../../../examples/models", import.meta.url));
const STAKE = 1000n;
const APPROVAL_TTL_MS = 4000;
const ESCROW_MARGIN_MS = 5000;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

async function rejectsWith(promise: Promise<unknown>, code: Code, message?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    const e = ConnectError.from(error);
    assert.equal(e.code, code, `${Code[e.code]}: ${e.rawMessage}`);
    if (message !== undefined) assert.match(e.rawMessage, message);
    return true;
  });
}

describe("gateway on a paid subnet with a real wallet, registry and validators", () => {
  const processes: SpawnedService[] = [];
  const sessions: Http2SessionManager[] = [];
  const stopBeats: (() => void)[] = [];
  const nodes: TestNode[] = [];
  let dir: string;
  let gateway: TestGateway;
  let walletAddress: string;
  let registryAddress: string;
  let walletUrl: string;
  let registryUrl: string;
  const client = generateKeyPair();
  const auditor = generateKeyPair();
  // Validators re-execute results, so the test nodes run the real example model (one id per test).
  let hosted: Awaited<ReturnType<typeof hostExampleModel>>;

  const keyIn = async (name: string): Promise<KeyPair> => {
    await mkdir(join(dir, name), { recursive: true });
    return (await loadOrCreateServiceKey({ path: join(dir, name, "key.json"), name })).keyPair;
  };
  const wallet = (k: KeyPair): Client<typeof WalletService> =>
    signedClient(WalletService, walletUrl, k, walletAddress, sessions);
  const registry = (k: KeyPair): Client<typeof RegistryService> =>
    signedClient(RegistryService, registryUrl, k, registryAddress, sessions);
  const balance = async (address: string) =>
    BigInt(
      (await wallet(auditor).getBalance({ protocolVersion: PROTOCOL_VERSION, address })).available,
    );

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "gateway-paid-"));
    hosted = await hostExampleModel(
      ["paid-blobs", "late-blobs", "move-blobs", "cancel-blobs", "zero-blobs"],
      join(dir, "cache"),
    );
    const walletKey = await keyIn("wallet");
    const registryKey = await keyIn("registry");
    const validators = [await keyIn("validator-1"), await keyIn("validator-2")];
    // The registry approves work only for routers it knows: the gateway is a trusted one.
    const gatewayKey = await keyIn("gateway");
    walletAddress = walletKey.address;
    registryAddress = registryKey.address;
    const common = (name: string) => ({
      HOST: "127.0.0.1",
      PORT: "0",
      DATA_DIR: join(dir, name),
      SHUTDOWN_GRACE_MS: "1000",
    });
    // The wallet reads the validator set from the registry, which starts after it: its port is
    // chosen up front.
    const registryPort = await freePort();
    registryUrl = `http://127.0.0.1:${registryPort}`;
    const walletProcess = await spawnService({
      entry: entry("wallet"),
      env: {
        ...common("wallet"),
        REGISTRY_URL: registryUrl,
        VALIDATOR_SET_CACHE_MS: "0",
        READERS: [registryAddress, auditor.address].join(","),
        GENESIS: [
          `${client.address}=1000000000`,
          ...validators.map((v) => `${v.address}=${10n * STAKE}`),
        ].join(","),
      },
    });
    processes.push(walletProcess);
    walletUrl = walletProcess.url;
    const registryProcess = await spawnService({
      entry: entry("registry"),
      env: {
        ...common("registry"),
        PORT: String(registryPort),
        REGISTRY_ROLE: "registry",
        TRUSTED_REPORTERS: gatewayKey.address,
        VALIDATOR_QUORUM: "2",
        VALIDATOR_MIN_STAKE: String(STAKE),
        WALLET_URL: walletUrl,
        WALLET_ADDRESS: walletAddress,
        POW_DIFFICULTY: String(TEST_POW),
        HEARTBEAT_INTERVAL_MS: "300",
        HEARTBEAT_TIMEOUT_MS: "1500",
        APPROVAL_TTL_MS: String(APPROVAL_TTL_MS),
        GOSSIP_INTERVAL_MS: "600000",
        MODEL_DIRS: exampleModelsDir,
      },
    });
    processes.push(registryProcess);
    for (const [i] of validators.entries()) {
      processes.push(
        await spawnService({
          entry: entry("registry"),
          env: {
            ...common(`validator-${i + 1}`),
            REGISTRY_ROLE: "validator",
            REGISTRY_URL: registryUrl,
            TRUSTED_REGISTRIES: registryAddress,
            TREASURY_ADDRESS: registryAddress,
            WALLET_URL: walletUrl,
            WALLET_ADDRESS: walletAddress,
            VALIDATOR_STAKE: String(STAKE),
            POW_DIFFICULTY: String(TEST_POW),
            MODEL_DIRS: exampleModelsDir,
          },
        }),
      );
    }
    await eventually(
      async () => {
        const list = await registry(auditor).listValidators({ protocolVersion: PROTOCOL_VERSION });
        const active = list.validators.filter((v) => v.status === ValidatorStatus.ACTIVE).length;
        return active >= 2 && list.requiredSignatures > 0 ? true : undefined;
      },
      30_000,
      "validators to be active",
    );
    gateway = await startTestGateway({
      DATA_DIR: join(dir, "gateway"),
      REGISTRY_URL: registryUrl,
      REGISTRY_ADDRESS: registryAddress,
      WALLET_URL: walletUrl,
      WALLET_ADDRESS: walletAddress,
      ESCROW_MARGIN_MS: String(ESCROW_MARGIN_MS),
      TASK_TIMEOUT_MS: "20000",
    });
  });

  after(async () => {
    for (const stop of stopBeats) stop();
    for (const node of nodes) await node.stop();
    for (const session of sessions) session.abort();
    await gateway?.close();
    for (const p of processes.reverse()) await p.stop("SIGTERM");
    await hosted?.close();
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  });

  /** A node known to the registry (beating it) and to the gateway, stream open. */
  async function paidNode(
    modelId: string,
    answer: "compute" | "ignore" = "compute",
    pricePerHour?: string,
  ) {
    const model = hosted.models.find((m) => m.descriptor.modelId === modelId);
    const node = new TestNode(gateway, {
      hosted: model === undefined ? [] : [model],
      ...(pricePerHour === undefined ? {} : { pricePerHour }),
    });
    nodes.push(node);
    stopBeats.push(await node.joinRegistry(registry(node.keyPair)));
    const accepted = await node.register();
    assert.deepEqual(accepted.acceptedModelIds, [modelId]);
    node.startHeartbeats(100);
    node.answer = answer;
    node.openStream(4);
    return node;
  }

  function submit(requestId: string, modelId: string) {
    const { bytes, specs } = affineInput([[1, 2]], "input");
    return gateway.client(client).submitInferenceTask({
      protocolVersion: PROTOCOL_VERSION,
      requestId,
      modelId,
      input: bytes,
      inputMediaType: RAW_TENSORS_MEDIA_TYPE,
      inputTensors: specs,
      clientAddress: client.address,
    });
  }

  async function fund(requestId: string, amount: bigint, deadlineMs: number, escrowId: string) {
    const made = await wallet(client).createEscrow({
      protocolVersion: PROTOCOL_VERSION,
      escrowId,
      jobId: requestId,
      payerAddress: client.address,
      amount: amount.toString(),
      arbiterAddress: gateway.address,
      expiresAt: timestampFromMs(deadlineMs + ESCROW_MARGIN_MS + 2000),
    });
    return made.escrow?.escrowId ?? assert.fail("no escrow");
  }

  function confirm(requestId: string, escrowId: string) {
    return gateway.client(client).confirmPayment({
      protocolVersion: PROTOCOL_VERSION,
      confirmation: { requestId, escrowId, payerAddress: client.address },
    });
  }

  async function finished(requestId: string) {
    return eventually(
      async () => {
        const answer = await gateway
          .client(client)
          .getTaskStatus({ protocolVersion: PROTOCOL_VERSION, requestId });
        const state = answer.status?.state ?? InferenceTaskState.UNSPECIFIED;
        const settledOrFree =
          answer.status?.paymentStatus?.released === true ||
          answer.status?.paymentStatus?.refunded === true ||
          answer.status?.paymentStatus?.paymentConfirmed !== true;
        return state >= InferenceTaskState.COMPLETED && settledOrFree ? answer : undefined;
      },
      25_000,
      `task ${requestId} to finish`,
    );
  }

  test("a paid task: approval, refused and accepted payment, result, validation, release", async () => {
    const node = await paidNode("paid-blobs");
    const submitted = await submit("paid-1", "paid-blobs");
    const status = submitted.status;
    assert.equal(status?.state, InferenceTaskState.AWAITING_PAYMENT);
    const payment = status?.paymentStatus;
    assert.equal(payment?.required, true);
    assert.equal(payment?.preprocessingComplete, true);
    assert.equal(payment?.escrowArbiterAddress, gateway.address);
    const due = BigInt(payment?.amountDue ?? "0");
    assert.ok(due > 0n, "a price is due");
    const tree = payment?.paymentTree ?? assert.fail("no payment tree");
    assert.equal(
      status?.preprocessingValidation?.terms?.route?.computeNodeAddress,
      node.address,
      "the approval routes to the node hosting the model",
    );
    const deadlineMs = timestampMs(status?.deadline ?? assert.fail("no deadline"));

    // Nothing in escrow, then too little: refused, the task keeps waiting.
    await rejectsWith(confirm("paid-1", "no-such-escrow"), Code.FailedPrecondition);
    const short = await fund("paid-1", due - 1n, deadlineMs, "paid-1-short");
    await rejectsWith(confirm("paid-1", short), Code.FailedPrecondition, /less than/);
    await rejectsWith(
      gateway.client(generateKeyPair()).confirmPayment({
        protocolVersion: PROTOCOL_VERSION,
        confirmation: { requestId: "paid-1", escrowId: short },
      }),
      Code.PermissionDenied,
    );

    const nodeBefore = await balance(node.payoutAddress);
    const gatewayBefore = await balance(gateway.address);
    const clientBefore = await balance(client.address);
    const escrowId = await fund("paid-1", due, deadlineMs, "paid-1-escrow");
    const confirmed = await confirm("paid-1", escrowId);
    assert.ok((confirmed.status?.state ?? 0) >= InferenceTaskState.QUEUED);
    assert.equal(confirmed.status?.paymentStatus?.paymentConfirmed, true);
    assert.equal((await confirm("paid-1", escrowId)).status?.paymentStatus?.escrowId, escrowId);

    const done = await finished("paid-1");
    assert.equal(done.status?.state, InferenceTaskState.COMPLETED, done.status?.errorMessage);
    assert.equal(done.status?.paymentStatus?.released, true);
    assert.equal(done.status?.paymentStatus?.completionValidated, true);
    assert.equal(done.result?.completionValidation?.terms?.approved, true);
    const probabilities = floatsOf(done.result?.output ?? new Uint8Array());
    assert.equal(probabilities.length, 3);
    assert.ok(Math.abs(probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-4);

    assert.equal(await balance(node.payoutAddress), nodeBefore + BigInt(tree.computeAmount));
    assert.equal(await balance(gateway.address), gatewayBefore + BigInt(tree.gatewayAmount));
    assert.equal(await balance(client.address), clientBefore - due);
    const escrow = await wallet(client).getEscrow({ protocolVersion: PROTOCOL_VERSION, escrowId });
    assert.equal(escrow.escrow?.state, EscrowState.RELEASED);
  });

  test("a task approved at price 0 needs no escrow, runs on its node and is still validated", async () => {
    const node = await paidNode("zero-blobs", "compute", "0");
    const nodeBefore = await balance(node.payoutAddress);
    const clientBefore = await balance(client.address);
    const submitted = await submit("zero-1", "zero-blobs");
    const status = submitted.status;
    assert.equal(status?.state, InferenceTaskState.QUEUED, status?.errorMessage);
    const payment = status?.paymentStatus;
    assert.equal(payment?.required, true);
    assert.equal(payment?.preprocessingComplete, true);
    assert.equal(payment?.amountDue, "0", "nothing is due");
    assert.equal(payment?.paymentConfirmed, false);
    assert.equal(payment?.escrowId, "");
    assert.equal(status?.preprocessingValidation?.terms?.route?.computeNodeAddress, node.address);
    await rejectsWith(confirm("zero-1", "zero-1-escrow"), Code.FailedPrecondition, /price of 0/);

    const done = await finished("zero-1");
    assert.equal(done.status?.state, InferenceTaskState.COMPLETED, done.status?.errorMessage);
    assert.equal(done.status?.assignedComputeNodeAddress, node.address);
    assert.equal(done.status?.paymentStatus?.completionValidated, true);
    assert.equal(done.result?.completionValidation?.terms?.approved, true);
    assert.equal(done.status?.paymentStatus?.released, false);
    assert.equal(done.status?.paymentStatus?.refunded, false);
    assert.equal(floatsOf(done.result?.output ?? new Uint8Array()).length, 3);
    assert.equal(await balance(node.payoutAddress), nodeBefore, "no money moves");
    assert.equal(await balance(client.address), clientBefore, "no money moves");
  });

  test("payment after the approval expired is refused, the task expires and the escrow is refunded", async () => {
    await paidNode("late-blobs");
    const submitted = await submit("late-1", "late-blobs");
    assert.equal(submitted.status?.state, InferenceTaskState.AWAITING_PAYMENT);
    const due = BigInt(submitted.status?.paymentStatus?.amountDue ?? "0");
    const deadlineMs = timestampMs(submitted.status?.deadline ?? assert.fail("no deadline"));
    await new Promise((resolve) => setTimeout(resolve, APPROVAL_TTL_MS + 300));
    const escrowId = await fund("late-1", due, deadlineMs, "late-1-escrow");
    await rejectsWith(confirm("late-1", escrowId), Code.FailedPrecondition, /expired/);
    const status = await gateway
      .client(client)
      .getTaskStatus({ protocolVersion: PROTOCOL_VERSION, requestId: "late-1" });
    assert.equal(status.status?.state, InferenceTaskState.EXPIRED);
    await eventually(
      async () => {
        const e = await wallet(client).getEscrow({ protocolVersion: PROTOCOL_VERSION, escrowId });
        return e.escrow?.state === EscrowState.REFUNDED ? true : undefined;
      },
      10_000,
      "the escrow to be refunded",
    );
  });

  test("a node that vanishes mid-task: re-approved on another node, which alone is paid", async () => {
    const a = await paidNode("move-blobs", "ignore");
    const submitted = await submit("move-1", "move-blobs");
    const due = BigInt(submitted.status?.paymentStatus?.amountDue ?? "0");
    const deadlineMs = timestampMs(submitted.status?.deadline ?? assert.fail("no deadline"));
    const escrowId = await fund("move-1", due, deadlineMs, "move-1-escrow");
    await confirm("move-1", escrowId);
    await eventually(() => a.task("move-1"), 5000, "delivery to a");
    const aIndex = nodes.indexOf(a);
    stopBeats[aIndex]?.(); // a stops beating the registry too
    await a.stop();
    const b = await paidNode("move-blobs");
    const aBefore = await balance(a.payoutAddress);
    const bBefore = await balance(b.payoutAddress);

    const done = await finished("move-1");
    assert.equal(done.status?.state, InferenceTaskState.COMPLETED, done.status?.errorMessage);
    assert.equal(done.status?.assignedComputeNodeAddress, b.address);
    assert.equal(done.status?.paymentStatus?.released, true);
    const tree = done.status?.paymentStatus?.paymentTree ?? assert.fail("no tree");
    assert.equal(tree.computeAddress, b.payoutAddress);
    assert.equal(await balance(b.payoutAddress), bBefore + BigInt(tree.computeAmount));
    assert.equal(await balance(a.payoutAddress), aBefore, "the vanished node is not paid");
    // a comes back with its result: refused, nothing moves
    const late = a.task("move-1") ?? assert.fail();
    await rejectsWith(a.respond(late), Code.FailedPrecondition);
  });

  test("cancelling a paid, running task refunds its escrow and tells the node", async () => {
    const node = await paidNode("cancel-blobs", "ignore");
    const submitted = await submit("cancel-1", "cancel-blobs");
    const due = BigInt(submitted.status?.paymentStatus?.amountDue ?? "0");
    const deadlineMs = timestampMs(submitted.status?.deadline ?? assert.fail("no deadline"));
    const clientBefore = await balance(client.address);
    const escrowId = await fund("cancel-1", due, deadlineMs, "cancel-1-escrow");
    await confirm("cancel-1", escrowId);
    await eventually(() => node.task("cancel-1"), 5000, "delivery");
    const cancelled = await gateway.client(client).cancelTask({
      protocolVersion: PROTOCOL_VERSION,
      requestId: "cancel-1",
      reason: "no longer needed",
    });
    assert.equal(cancelled.status?.state, InferenceTaskState.CANCELLED);
    assert.equal(cancelled.status?.paymentStatus?.refunded, true);
    const escrow = await wallet(client).getEscrow({ protocolVersion: PROTOCOL_VERSION, escrowId });
    assert.equal(escrow.escrow?.state, EscrowState.REFUNDED);
    assert.equal(await balance(client.address), clientBefore);
    await eventually(() => (node.cancelled.has("cancel-1") ? true : undefined), 5000, "notice");
    const late = node.task("cancel-1") ?? assert.fail();
    await rejectsWith(node.respond(late), Code.FailedPrecondition);
  });

  test("nodes unknown to the registry are refused; direct access is for free subnets only", async () => {
    const stranger = new TestNode(gateway, { hosted: hosted.models.slice(0, 1) });
    await rejectsWith(stranger.register(), Code.FailedPrecondition, /registry does not know/);
    await rejectsWith(
      gateway.client(client).requestDirectAccess({
        protocolVersion: PROTOCOL_VERSION,
        requestId: "direct-1",
        modelId: "paid-blobs",
        clientAddress: client.address,
      }),
      Code.FailedPrecondition,
      /paid/,
    );
  });
});
