/**
 * The gateway link against a small GatewayComputeService served in the test (real server on port
 * 0, every call signed and verified): registration, the task stream, signed results, cancellation,
 * reconnects, registering again, retries and a draining close. The hosted model is a stand-in
 * (output = 2 × input) so each case controls timing; the real model path is covered by the
 * TensorService and network suites.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type ServiceImpl } from "@connectrpc/connect";
import { createVerifyingInterceptor, requireCaller } from "@tessera/auth";
import { sha256 } from "@tessera/identity/hash";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import { verifyComputeCompletion } from "@tessera/identity/validation-bundle";
import type { HostedModel } from "@tessera/ml/model-host";
import {
  packRawTensors,
  RAW_TENSORS_MEDIA_TYPE,
  type RawTensor,
  typedView,
  unpackRawTensors,
} from "@tessera/ml/tensors";
import {
  ModelDescriptorSchema,
  NodeLoadSchema,
  NodeRecordSchema,
  TensorSpecSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  GatewayComputeService,
  type ReceiveTaskResponse,
  ReceiveTaskResponseSchema,
} from "@tessera/proto/tessera/gateway/v1/gateway_compute_service_pb.js";
import {
  InferenceOutcome,
  type InferenceResult,
  type InferenceTask,
  InferenceTaskSchema,
  InferenceTaskState,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { createLogger, type ServiceServer, startServiceServer } from "@tessera/runtime";
import { NODE_PROTOCOL_VERSION } from "../protocol-version.js";
import { type GatewayLink, startGatewayLink } from "./gateway-link.js";
import { createSignedTransport, type SignedTransport } from "./signed-transport.js";

const logger = createLogger({
  service: "compute-node",
  level: process.env.TEST_LOG_LEVEL === undefined ? "silent" : "debug",
});
const MODEL_ID = "doubler";

const descriptor = create(ModelDescriptorSchema, {
  modelId: MODEL_ID,
  inputs: [create(TensorSpecSchema, { name: "input", shape: [-1n, 2n], dtype: "float32" })],
  outputs: [create(TensorSpecSchema, { name: "output", shape: [-1n, 2n], dtype: "float32" })],
});

/** A stand-in model: output = 2 × input, after `delayMs` (aborted by the signal). */
function doubler(state: { delayMs: number; runs: number }): HostedModel {
  return {
    descriptor,
    supportsBackward: false,
    batching: { maxBatchSize: 1, maxDelayMs: 0 },
    stats: () => ({ batches: state.runs, rows: state.runs }),
    async forward(inputs: readonly RawTensor[], signal?: AbortSignal): Promise<RawTensor[]> {
      state.runs++;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, state.delayMs);
        signal?.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(signal.reason);
        });
      });
      const input = inputs[0] as RawTensor;
      const values = Float32Array.from(typedView(input) as Float32Array, (v) => v * 2);
      return [
        {
          name: "output",
          dtype: "float32",
          shape: input.shape,
          data: new Uint8Array(values.buffer),
        },
      ];
    },
    backward(): Promise<RawTensor[]> {
      return Promise.reject(new Error("no backward"));
    },
  };
}

/** The in-test gateway: what it saw and what it does next. */
interface FakeGateway {
  registrations: number;
  heartbeats: string[][];
  streamsOpened: number;
  results: InferenceResult[];
  /** Tasks waiting to be streamed. */
  queue: InferenceTask[];
  /** Ids the next heartbeat cancels. */
  cancel: string[];
  /** Whether the gateway forgot the node (heartbeats and streams answer not_found). */
  forgot: boolean;
  /** Submits to refuse with unavailable before accepting. */
  failSubmits: number;
  /** End each stream after this many deliveries. */
  deliveriesPerStream: number;
}

let gatewayKey: KeyPair;
let server: ServiceServer;
let fake: FakeGateway;

function resetFake(): void {
  fake = {
    registrations: 0,
    heartbeats: [],
    streamsOpened: 0,
    results: [],
    queue: [],
    cancel: [],
    forgot: false,
    failSubmits: 0,
    deliveriesPerStream: Number.POSITIVE_INFINITY,
  };
}

function gatewayService(): ServiceImpl<typeof GatewayComputeService> {
  return {
    registerComputeNode(request, ctx) {
      assert.equal(request.record?.address, requireCaller(ctx));
      fake.registrations++;
      fake.forgot = false;
      return {
        acceptedModelIds: request.record?.models.map((model) => model.modelId) ?? [],
        heartbeatIntervalMs: 50,
      };
    },
    updateHeartbeat(request) {
      if (fake.forgot) throw new ConnectError("unknown node", Code.NotFound);
      fake.heartbeats.push([...(request.load?.activeJobIds ?? [])]);
      const cancelled = fake.cancel.splice(0);
      return { heartbeatIntervalMs: 50, cancelledRequestIds: cancelled };
    },
    async *receiveTask(request, ctx): AsyncGenerator<ReceiveTaskResponse> {
      // A stream serves the test that opened it, even if it outlives that test.
      const mine = fake;
      if (mine.forgot) throw new ConnectError("unknown node", Code.NotFound);
      assert.deepEqual(request.modelIds, [MODEL_ID]);
      assert.ok(request.maxBatchSize >= 1);
      mine.streamsOpened++;
      let delivered = 0;
      while (!ctx.signal.aborted && delivered < mine.deliveriesPerStream && !mine.forgot) {
        if (mine.queue.length === 0) {
          await new Promise((resolve) => setTimeout(resolve, 10));
          continue;
        }
        const tasks = mine.queue.splice(0, request.maxBatchSize);
        delivered++;
        yield create(ReceiveTaskResponseSchema, { tasks });
      }
    },
    submitResult(request) {
      if (fake.failSubmits > 0) {
        fake.failSubmits--;
        throw new ConnectError("gateway busy", Code.Unavailable);
      }
      assert.ok(request.result);
      fake.results.push(request.result);
      return {
        state:
          request.result.outcome === InferenceOutcome.SUCCEEDED
            ? InferenceTaskState.VALIDATING
            : InferenceTaskState.FAILED,
      };
    },
    getTask() {
      throw new ConnectError("not used", Code.Unimplemented);
    },
  };
}

before(async () => {
  gatewayKey = generateKeyPair();
  resetFake();
  const seen = new Map<string, bigint>();
  server = await startServiceServer({
    service: "gateway",
    logger,
    host: "127.0.0.1",
    port: 0,
    limits: { maxMessageBytes: 4 << 20, defaultDeadlineMs: 30_000, maxDeadlineMs: 300_000 },
    files: [GatewayComputeService.file],
    routes: (router) => {
      router.service(GatewayComputeService, gatewayService());
    },
    interceptors: [
      createVerifyingInterceptor({
        selfAddress: gatewayKey.address,
        nonceStore: {
          async advance(caller, nonce) {
            if (nonce <= (seen.get(caller) ?? -1n)) return false;
            seen.set(caller, nonce);
            return true;
          },
        },
      }),
    ],
    shutdownGraceMs: 100,
  });
});

after(async () => {
  await server?.close();
});

beforeEach(() => {
  resetFake();
});

interface Linked {
  readonly link: GatewayLink;
  readonly node: KeyPair;
  readonly model: { delayMs: number; runs: number };
  readonly connection: SignedTransport;
  close(): Promise<void>;
}

function startLink(options: { delayMs?: number; shutdownGraceMs?: number } = {}): Linked {
  const node = generateKeyPair();
  const model = { delayMs: options.delayMs ?? 0, runs: 0 };
  const connection = createSignedTransport({
    baseUrl: server.url,
    target: gatewayKey.address,
    keyPair: node,
    nonceSource: createNonceSource(),
  });
  const hosted = doubler(model);
  const link = startGatewayLink({
    gateway: createClient(GatewayComputeService, connection.transport),
    keyPair: node,
    record: create(NodeRecordSchema, { address: node.address, models: [descriptor] }),
    model: (id) => (id === MODEL_ID ? hosted : undefined),
    maxBatchSize: 8,
    load: () => create(NodeLoadSchema, { freeSlots: 1 }),
    shutdownGraceMs: options.shutdownGraceMs ?? 2000,
    logger,
    initialBackoffMs: 20,
  });
  return {
    link,
    node,
    model,
    connection,
    async close() {
      await link.close();
      connection.close();
    },
  };
}

function rawTask(requestId: string, node: string, values: number[], modelId = MODEL_ID) {
  const { bytes, specs } = packRawTensors([
    {
      name: "input",
      dtype: "float32",
      shape: [values.length / 2, 2],
      data: new Uint8Array(Float32Array.from(values).buffer),
    },
  ]);
  return create(InferenceTaskSchema, {
    protocolVersion: NODE_PROTOCOL_VERSION,
    requestId,
    modelId,
    input: bytes,
    inputMediaType: RAW_TENSORS_MEDIA_TYPE,
    inputTensors: specs,
    clientAddress: generateKeyPair().address,
    assignedComputeNodeAddress: node,
    deadline: timestampFromDate(new Date(Date.now() + 30_000)),
  });
}

function jsonTask(requestId: string, node: string, rows: number[][]) {
  return create(InferenceTaskSchema, {
    protocolVersion: NODE_PROTOCOL_VERSION,
    requestId,
    modelId: MODEL_ID,
    input: new TextEncoder().encode(JSON.stringify(rows)),
    inputMediaType: "application/json",
    assignedComputeNodeAddress: node,
  });
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function outputValues(result: InferenceResult): number[] {
  const [output] = unpackRawTensors(result.output, result.outputTensors);
  assert.ok(output);
  return Array.from(typedView(output) as Float32Array);
}

test("delivered tasks come back as signed raw-tensor results, raw and JSON input alike", async () => {
  const linked = startLink();
  try {
    fake.queue.push(
      rawTask("r-1", linked.node.address, [1, 2, 3, 4]),
      jsonTask("r-2", linked.node.address, [[0.5, -1]]),
    );
    await until("both results arrive", () => fake.results.length === 2);
    assert.equal(fake.registrations, 1);
    const byId = new Map(fake.results.map((result) => [result.requestId, result]));
    const raw = byId.get("r-1");
    const json = byId.get("r-2");
    assert.ok(raw && json);
    assert.deepEqual(outputValues(raw), [2, 4, 6, 8]);
    assert.deepEqual(outputValues(json), [1, -2]);
    for (const result of [raw, json]) {
      assert.equal(result.outcome, InferenceOutcome.SUCCEEDED);
      assert.equal(result.outputMediaType, RAW_TENSORS_MEDIA_TYPE);
      assert.equal(result.modelId, MODEL_ID);
      const completion = result.computeCompletion;
      assert.ok(completion);
      assert.equal(completion.requestId, result.requestId);
      assert.equal(completion.computeNodeAddress, linked.node.address);
      assert.deepEqual(completion.resultHash, sha256(result.output));
      assert.ok(verifyComputeCompletion(completion), "the completion signature verifies");
    }
    assert.deepEqual(raw.outputTensors[0]?.shape, [2n, 2n]);
  } finally {
    await linked.close();
  }
});

test("a task the node cannot run is submitted FAILED with a reason and a signed completion", async () => {
  const linked = startLink();
  try {
    const bad = rawTask("r-bad", linked.node.address, [1, 2, 3, 4]);
    bad.inputTensors = [
      create(TensorSpecSchema, { name: "input", shape: [3n, 2n], dtype: "float32" }),
    ];
    fake.queue.push(rawTask("r-other", linked.node.address, [1, 2], "other-model"), bad);
    await until("both results arrive", () => fake.results.length === 2);
    const byId = new Map(fake.results.map((result) => [result.requestId, result]));
    const other = byId.get("r-other");
    assert.equal(other?.outcome, InferenceOutcome.FAILED);
    assert.match(other?.errorMessage ?? "", /other-model.*not hosted/);
    const malformed = byId.get("r-bad");
    assert.equal(malformed?.outcome, InferenceOutcome.FAILED);
    assert.match(malformed?.errorMessage ?? "", /"input"/);
    assert.equal(malformed?.output.length, 0);
    assert.ok(malformed?.computeCompletion && verifyComputeCompletion(malformed.computeCompletion));
    assert.equal(linked.model.runs, 0, "the model never ran");
  } finally {
    await linked.close();
  }
});

test("a task cancelled by a heartbeat stops and submits nothing; it was listed as active", async () => {
  const linked = startLink({ delayMs: 60_000 });
  try {
    fake.queue.push(rawTask("r-slow", linked.node.address, [1, 2]));
    await until("a heartbeat lists the task", () =>
      fake.heartbeats.some((ids) => ids.includes("r-slow")),
    );
    fake.cancel.push("r-slow");
    await until("the task is gone", () => linked.link.activeRequestIds().length === 0);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(fake.results.length, 0);
  } finally {
    await linked.close();
  }
});

test("the stream is reopened when the gateway ends it, and the node registers again when forgotten", async () => {
  const linked = startLink();
  try {
    fake.deliveriesPerStream = 1;
    fake.queue.push(rawTask("s-1", linked.node.address, [1, 1]));
    await until("the first result", () => fake.results.length === 1);
    fake.queue.push(rawTask("s-2", linked.node.address, [2, 2]));
    await until("the second result", () => fake.results.length === 2);
    assert.ok(fake.streamsOpened >= 2);

    fake.forgot = true;
    await until("the node registers again", () => fake.registrations >= 2);
    fake.queue.push(rawTask("s-3", linked.node.address, [3, 3]));
    await until("a result after registering again", () => fake.results.length === 3);
  } finally {
    await linked.close();
  }
});

test("a result is retried while the gateway is unavailable", async () => {
  const linked = startLink();
  try {
    fake.failSubmits = 2;
    fake.queue.push(rawTask("u-1", linked.node.address, [5, 6]));
    await until("the result is taken", () => fake.results.length === 1);
    assert.deepEqual(outputValues(fake.results[0] as InferenceResult), [10, 12]);
  } finally {
    await linked.close();
  }
});

test("closing lets a running task finish and submit, then takes no more tasks", async () => {
  const linked = startLink({ delayMs: 300 });
  fake.queue.push(rawTask("c-1", linked.node.address, [1, 2]));
  await until("the task runs", () => linked.link.activeRequestIds().includes("c-1"));
  await linked.close();
  assert.equal(linked.link.state, "closed");
  assert.deepEqual(
    fake.results.map((result) => result.requestId),
    ["c-1"],
  );
  fake.queue.push(rawTask("c-2", linked.node.address, [1, 2]));
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(fake.results.length, 1);
});

test("closing abandons a task that outlasts the grace, without a result", async () => {
  const linked = startLink({ delayMs: 60_000, shutdownGraceMs: 100 });
  fake.queue.push(rawTask("g-1", linked.node.address, [1, 2]));
  await until("the task runs", () => linked.link.activeRequestIds().includes("g-1"));
  const started = Date.now();
  await linked.close();
  assert.ok(Date.now() - started < 5000);
  assert.equal(fake.results.length, 0);
  assert.deepEqual(linked.link.activeRequestIds(), []);
});
