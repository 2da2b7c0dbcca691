/**
 * The inference network end to end (issue #6), every part a real process on a real port started
 * from its built binary: a wallet, a registry, three staked validators (quorum 2) that re-run
 * inference tasks with the hosted model, a gateway, and two compute nodes hosting the example
 * classifier (`examples/models/catalog.json`). A client with its own key asks the gateway for
 * inferences on the paid default subnet, pays into escrow and follows its tasks; the tests check
 * what the client and the wallet's ledger see: outputs equal to onnxruntime's own, balances moved
 * exactly by the approved payment tree, unpaid and expired tasks never run, a node that freezes
 * with a task in hand loses it to the other node (paid once), 50 concurrent callers each get their
 * own rows, and bad inputs get their Connect codes.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { readModelCatalog } from "@tessera/ml/model-catalog";
import { ort } from "@tessera/ml/onnxruntime";
import {
  packRawTensors,
  RAW_TENSORS_MEDIA_TYPE,
  type RawTensor,
  unpackRawTensors,
} from "@tessera/ml/tensors";
import {
  InferenceTaskState,
  type InferenceTaskStatus,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { EscrowState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { ensureJobEscrow, escrowIdFor } from "@tessera/sdk/escrow";
import { type GatewayClient, openGatewayClient } from "@tessera/sdk/gateway-client";
import { runInference } from "@tessera/sdk/inference";
import { SDK_PROTOCOL_VERSION as V1 } from "@tessera/sdk/protocol-version";
import {
  APPROVAL_TTL_MS,
  assertServicesBuilt,
  startTestNetwork,
  type TestNetwork,
} from "./test-network.js";

await assertServicesBuilt();

const CATALOG = fileURLToPath(new URL("../../../examples/models/catalog.json", import.meta.url));
const MODEL_ID = "blobs-classifier";

// onnxruntime-node, loaded directly (the copy @tessera/ml runs on the nodes), to check outputs.

/** `rows` rows of two float32 features, distinct per `seed`. */
function featureRows(seed: number, rows: number): Float32Array {
  const values = new Float32Array(rows * 2);
  for (let i = 0; i < values.length; i++) values[i] = Math.sin(seed * 7.31 + i * 1.7) * 4;
  return values;
}

function inputTensor(values: Float32Array): RawTensor {
  return {
    name: "input",
    dtype: "float32",
    shape: [values.length / 2, 2],
    data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  };
}

/** The raw-tensors payload of `values`. */
function payload(values: Float32Array) {
  const { bytes, specs } = packRawTensors([inputTensor(values)]);
  return { bytes, mediaType: RAW_TENSORS_MEDIA_TYPE, tensors: specs };
}

let net: TestNetwork;
let dir: string;
let gateway: GatewayClient;
/** The client's wallet client: one session and one nonce source for all its calls. */
let wallet: ReturnType<TestNetwork["wallet"]>;
/** The auditor's wallet client (reads every balance). */
let auditor: ReturnType<TestNetwork["wallet"]>;
let direct: ort.InferenceSession;

/** onnxruntime's own output for `values`. */
async function expected(values: Float32Array): Promise<Float32Array> {
  const out = await direct.run({
    input: new ort.Tensor("float32", values, [values.length / 2, 2]),
  });
  return out.output?.data as Float32Array;
}

function outputOf(result: { output: Uint8Array; outputTensors: { name: string }[] }) {
  const tensors = unpackRawTensors(result.output, result.outputTensors as never);
  const output = tensors.find((t) => t.name === "output");
  assert.ok(output !== undefined, "no output tensor");
  // Copy: the decoded bytes may be a view into a larger pooled buffer.
  return new Float32Array(Uint8Array.from(output.data).buffer);
}

function assertClose(actual: Float32Array, wanted: Float32Array, what: string): void {
  assert.equal(actual.length, wanted.length, `${what}: length`);
  for (let i = 0; i < wanted.length; i++) {
    assert.ok(
      Math.abs((actual[i] ?? Number.NaN) - (wanted[i] ?? 0)) <= 1e-6,
      `${what}[${i}]: ${actual[i]} vs ${wanted[i]}`,
    );
  }
}

async function available(address: string): Promise<bigint> {
  const balance = await auditor.getBalance({ protocolVersion: V1, address });
  return BigInt(balance.available);
}

function submit(requestId: string, values: Float32Array) {
  const input = payload(values);
  return gateway.tasks.submitInferenceTask({
    protocolVersion: V1,
    requestId,
    modelId: MODEL_ID,
    input: input.bytes,
    inputMediaType: input.mediaType,
    inputTensors: input.tensors,
    clientAddress: net.client.address,
  });
}

/** Funds the task's escrow for the approved amount and confirms it. */
async function payFor(status: InferenceTaskStatus) {
  const due = BigInt(status.paymentStatus?.amountDue ?? "0");
  assert.ok(due > 0n, "a paid task names its price");
  const escrowId = escrowIdFor(net.client.address, status.requestId);
  await ensureJobEscrow(wallet, {
    escrowId,
    jobId: status.requestId,
    payerAddress: net.client.address,
    amount: due,
    arbiterAddress: net.gatewayAddress,
    expiresInMs: 15 * 60_000,
  });
  const confirmation = {
    requestId: status.requestId,
    escrowId,
    payerAddress: net.client.address,
    amount: due.toString(),
  };
  return {
    escrowId,
    due,
    confirm: () => gateway.tasks.confirmPayment({ protocolVersion: V1, confirmation }),
  };
}

/** Follows a task until it ends. */
async function finalStatus(requestId: string) {
  let last: { status?: InferenceTaskStatus | undefined; result?: unknown } = {};
  for await (const update of gateway.tasks.subscribeToTaskUpdates(
    { protocolVersion: V1, requestId },
    { timeoutMs: 120_000 },
  )) {
    last = update;
    const state = update.status?.state;
    if (
      state === InferenceTaskState.COMPLETED ||
      state === InferenceTaskState.FAILED ||
      state === InferenceTaskState.CANCELLED ||
      state === InferenceTaskState.EXPIRED
    ) {
      break;
    }
  }
  return last;
}

async function codeOf(call: Promise<unknown>): Promise<Code> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error).code;
  }
  assert.fail("the call succeeded");
}

describe("inference tasks through the gateway (real processes)", { timeout: 600_000 }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-infer-e2e-"));
    net = await startTestNetwork({ dir, modelsFile: CATALOG, clientFunds: 10_000_000n });
    wallet = net.wallet(net.client);
    auditor = net.wallet(net.auditor);
    gateway = openGatewayClient({
      baseUrl: net.gatewayUrl,
      address: net.gatewayAddress,
      keyPair: net.client,
    });
    const [model] = await readModelCatalog(CATALOG);
    assert.ok(model?.descriptor.content !== undefined);
    direct = await ort.InferenceSession.create(
      await readFile(fileURLToPath(model.descriptor.content.uri)),
    );
    // The gateway routes only once the nodes have registered their models with it.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { models } = await gateway.tasks.listModels({ protocolVersion: V1 });
      if ((models.find((m) => m.descriptor?.modelId === MODEL_ID)?.onlineNodeCount ?? 0) >= 2) {
        break;
      }
      if (Date.now() > deadline) throw new Error("the nodes never registered with the gateway");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });

  after(async () => {
    gateway?.close();
    await direct?.release();
    await net?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test("the gateway lists the hosted model with its formats, on two nodes, paid", async () => {
    const { models } = await gateway.tasks.listModels({ protocolVersion: V1 });
    const model = models.find((m) => m.descriptor?.modelId === MODEL_ID);
    assert.ok(model !== undefined);
    assert.equal(model.onlineNodeCount, 2);
    assert.equal(model.paymentRequired, true);
    assert.deepEqual(
      model.descriptor?.inputs.map((s) => [s.name, s.dtype, s.shape.map(Number)]),
      [["input", "float32", [-1, 2]]],
    );
    assert.deepEqual(
      model.descriptor?.outputs.map((s) => [s.name, s.dtype]),
      [["output", "float32"]],
    );
  });

  test("a paid task runs only once funded; its output equals onnxruntime's and the tree is paid exactly", async () => {
    const values = featureRows(1, 5);
    const submitted = (await submit("paid-1", values)).status;
    assert.equal(submitted?.state, InferenceTaskState.AWAITING_PAYMENT);
    assert.ok(submitted !== undefined);
    const tree = submitted.paymentStatus?.paymentTree;
    assert.ok(tree !== undefined);
    assert.equal(submitted.paymentStatus?.escrowArbiterAddress, net.gatewayAddress);

    // Unpaid: confirming without an escrow is refused, and nothing runs.
    const escrowId = escrowIdFor(net.client.address, "paid-1");
    const unpaid = gateway.tasks.confirmPayment({
      protocolVersion: V1,
      confirmation: {
        requestId: "paid-1",
        escrowId,
        payerAddress: net.client.address,
        amount: "1",
      },
    });
    assert.equal(await codeOf(unpaid), Code.FailedPrecondition);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const waiting = await gateway.tasks.getTaskStatus({ protocolVersion: V1, requestId: "paid-1" });
    assert.equal(waiting.status?.state, InferenceTaskState.AWAITING_PAYMENT);
    assert.equal(waiting.result, undefined);

    const payer = await available(net.client.address);
    const payees = [
      tree.computeAddress,
      tree.gatewayAddress,
      tree.treasuryAddress,
      ...tree.validatorAddresses,
    ];
    const before = new Map<string, bigint>();
    for (const address of payees) before.set(address, await available(address));

    const payment = await payFor(submitted);
    const confirmed = await payment.confirm();
    assert.ok((confirmed.status?.state ?? 0) >= InferenceTaskState.QUEUED);
    const last = await finalStatus("paid-1");
    assert.equal(last.status?.state, InferenceTaskState.COMPLETED, last.status?.errorMessage);
    const result = last.result as Parameters<typeof outputOf>[0] & {
      completionValidation?: { terms?: { approved: boolean } };
    };
    assertClose(outputOf(result), await expected(values), "output");
    assert.equal(result.completionValidation?.terms?.approved, true);

    const { escrow } = await wallet.getEscrow({ protocolVersion: V1, escrowId: payment.escrowId });
    assert.equal(escrow?.state, EscrowState.RELEASED);
    assert.equal(await available(net.client.address), payer - payment.due);
    const gained = async (address: string) =>
      (await available(address)) - (before.get(address) ?? 0n);
    assert.equal(await gained(tree.computeAddress), BigInt(tree.computeAmount));
    assert.equal(await gained(tree.gatewayAddress), BigInt(tree.gatewayAmount));
    assert.equal(await gained(tree.treasuryAddress), BigInt(tree.treasuryAmount));
    let validators = 0n;
    for (const address of tree.validatorAddresses) validators += await gained(address);
    assert.equal(validators, BigInt(tree.validatorAmount));
    const total =
      BigInt(tree.computeAmount) +
      BigInt(tree.gatewayAmount) +
      BigInt(tree.validatorAmount) +
      BigInt(tree.treasuryAmount);
    assert.equal(total, payment.due, "the escrow held exactly the tree's total");

    // The same request id again is the same task: no second run, no second payment.
    const again = await submit("paid-1", values);
    assert.equal(again.status?.state, InferenceTaskState.COMPLETED);
    assert.equal(await available(net.client.address), payer - payment.due);
  });

  test("the SDK's runInference pays and returns the output (what `tessera infer` does)", async () => {
    const values = featureRows(2, 3);
    const { result } = await runInference({
      gateway,
      wallet,
      modelId: MODEL_ID,
      input: payload(values),
    });
    assertClose(outputOf(result), await expected(values), "output");
  });

  test("50 concurrent callers each get exactly their own rows back", async () => {
    const callers = Array.from({ length: 50 }, (_, i) => featureRows(100 + i, 1 + (i % 4)));
    const results = await Promise.all(
      callers.map((values, i) =>
        runInference({
          gateway,
          wallet,
          requestId: `many-${i}`,
          modelId: MODEL_ID,
          input: payload(values),
        }),
      ),
    );
    for (const [i, values] of callers.entries()) {
      const { result } = results[i] ?? assert.fail("missing result");
      assertClose(outputOf(result), await expected(values), `caller ${i}`);
    }
  });

  test("bad inputs get their codes and leave nothing behind", async () => {
    const values = featureRows(3, 2);
    const short = payload(values);
    const code = await codeOf(
      gateway.tasks.submitInferenceTask({
        protocolVersion: V1,
        requestId: "bad-size",
        modelId: MODEL_ID,
        input: short.bytes.subarray(0, short.bytes.length - 4),
        inputMediaType: short.mediaType,
        inputTensors: short.tensors,
        clientAddress: net.client.address,
      }),
    );
    assert.equal(code, Code.InvalidArgument);
    assert.equal(
      await codeOf(gateway.tasks.getTaskStatus({ protocolVersion: V1, requestId: "bad-size" })),
      Code.NotFound,
    );
    assert.equal(
      await codeOf(
        gateway.tasks.submitInferenceTask({
          protocolVersion: V1,
          requestId: "no-model",
          modelId: "no-such-model",
          input: short.bytes,
          inputMediaType: short.mediaType,
          inputTensors: short.tensors,
          clientAddress: net.client.address,
        }),
      ),
      Code.NotFound,
    );
    const huge = featureRows(4, 600_000); // 4.8 MB, above the 4 MiB input limit
    assert.equal(await codeOf(submit("too-big", huge)), Code.ResourceExhausted);
  });

  test("an approval that expired before payment is refused; the task never runs", async () => {
    const submitted = (await submit("late-1", featureRows(5, 2))).status;
    assert.equal(submitted?.state, InferenceTaskState.AWAITING_PAYMENT);
    assert.ok(submitted !== undefined);
    const before = await available(net.client.address);
    const payment = await payFor(submitted);
    assert.equal(await available(net.client.address), before - payment.due);
    await new Promise((resolve) => setTimeout(resolve, APPROVAL_TTL_MS + 500));
    assert.equal(await codeOf(payment.confirm()), Code.FailedPrecondition);
    const status = await gateway.tasks.getTaskStatus({ protocolVersion: V1, requestId: "late-1" });
    assert.equal(status.status?.state, InferenceTaskState.EXPIRED);
    assert.equal(status.result, undefined);
    // The gateway, the escrow's arbiter, gave the money back: nothing was paid to anyone.
    const { escrow } = await wallet.getEscrow({ protocolVersion: V1, escrowId: payment.escrowId });
    assert.equal(escrow?.state, EscrowState.REFUNDED);
    assert.equal(await available(net.client.address), before);
  });

  test("a node that freezes with a task in hand loses it to the other node, which alone is paid", async () => {
    const values = featureRows(6, 4);
    const submitted = (await submit("frozen-1", values)).status;
    assert.ok(submitted !== undefined);
    const routed = submitted.preprocessingValidation?.terms?.route?.computeNodeAddress ?? "";
    const frozen = net.nodes.find((n) => n.address === routed);
    assert.ok(frozen?.process !== undefined, `the approval routes to one of our nodes (${routed})`);
    const survivor = net.nodes.find((n) => n.address !== routed);
    assert.ok(survivor !== undefined);
    const frozenBefore = await available(frozen.payoutAddress);
    const survivorBefore = await available(survivor.payoutAddress);

    const pid = frozen.process.child.pid;
    assert.ok(pid !== undefined);
    process.kill(pid, "SIGSTOP");
    try {
      const payment = await payFor(submitted);
      await payment.confirm();
      const last = await finalStatus("frozen-1");
      assert.equal(last.status?.state, InferenceTaskState.COMPLETED, last.status?.errorMessage);
      assert.equal(last.status?.assignedComputeNodeAddress, survivor.address);
      assertClose(outputOf(last.result as never), await expected(values), "output");
      const final = last.status?.preprocessingValidation?.terms;
      assert.equal(final?.route?.computeNodeAddress, survivor.address);
      const { escrow } = await wallet.getEscrow({
        protocolVersion: V1,
        escrowId: payment.escrowId,
      });
      assert.equal(escrow?.state, EscrowState.RELEASED);
    } finally {
      await net.killNode(frozen.address);
    }
    assert.equal(
      await available(frozen.payoutAddress),
      frozenBefore,
      "the frozen node got nothing",
    );
    assert.ok((await available(survivor.payoutAddress)) > survivorBefore, "the survivor was paid");
  });
});
