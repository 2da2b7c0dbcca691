/**
 * TensorService end to end: a compute node started on port 0 with a temporary DATA_DIR and a
 * catalog of a small ONNX model built here, driven from outside with signed Connect clients.
 * Forward must equal onnxruntime on the same file, Backward the finite differences of the same
 * model, and every refusal must carry its code and a message that says what is wrong.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { issueAccessToken } from "@tessera/identity/access-token";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import { verifyRecordPow, verifyRecordSignature } from "@tessera/identity/signed-record";
import { type OnnxModel, openOnnxModel } from "@tessera/ml/onnx-runner";
import { SynapseEndpointSchema } from "@tessera/proto/tessera/compute/v1/synapse_endpoint_pb.js";
import {
  DataType,
  type Tensor,
  type TensorMessage,
  TensorMessageSchema,
  TensorSchema,
} from "@tessera/proto/tessera/compute/v1/tensor_pb.js";
import { TensorService } from "@tessera/proto/tessera/compute/v1/tensor_service_pb.js";
import { createLogger, parseConfig } from "@tessera/runtime";
import { computeNodeConfigSpec } from "../config.js";
import { createSignedTransport, type SignedTransport } from "../peers/signed-transport.js";
import { NODE_PROTOCOL_VERSION } from "../protocol-version.js";
import { type ComputeNode, startComputeNode } from "../server.js";
import { TINY_CLASSES, TINY_FEATURES, writeTinyCatalog } from "../test-tiny-model.js";

const logger = createLogger({
  service: "compute-node",
  level: process.env.TEST_LOG_LEVEL === undefined ? "silent" : "debug",
});
const MODEL_ID = "tiny-classifier";
const NO_GRAD_MODEL_ID = "tiny-classifier-frozen";
const MAX_TENSOR_BYTES = 4096;
const FEATURES = TINY_FEATURES;
const CLASSES = TINY_CLASSES;

let dir: string;
let node: ComputeNode;
let onnx: OnnxModel;
let issuer: KeyPair;
let client: KeyPair;
let connection: SignedTransport;
let tensors: ReturnType<typeof createClient<typeof TensorService>>;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-tensor-service-"));
  const { path: modelsFile, bytes } = await writeTinyCatalog(dir, [
    { modelId: MODEL_ID, supportsBackward: true },
    { modelId: NO_GRAD_MODEL_ID, supportsBackward: false },
  ]);
  onnx = await openOnnxModel(bytes);
  issuer = generateKeyPair();
  client = generateKeyPair();
  const config = parseConfig(computeNodeConfigSpec, {
    HOST: "127.0.0.1",
    PORT: "0",
    DATA_DIR: join(dir, "node"),
    MODELS_FILE: modelsFile,
    TRUSTED_TOKEN_ISSUERS: issuer.address,
    MAX_TENSOR_BYTES: String(MAX_TENSOR_BYTES),
    // Small, so the transport's hard ceiling (2 × MAX_TENSOR_BYTES + 64 KiB) is what applies.
    MAX_MESSAGE_BYTES: "1024",
    POW_DIFFICULTY: "4",
    NVIDIA_SMI: "none",
    SHUTDOWN_GRACE_MS: "500",
  });
  node = await startComputeNode(config, logger);
  connection = createSignedTransport({
    baseUrl: node.url,
    target: node.address,
    keyPair: client,
    nonceSource: createNonceSource(),
  });
  tensors = createClient(TensorService, connection.transport);
});

after(async () => {
  connection?.close();
  await node?.close();
  await onnx?.close();
  await rm(dir, { recursive: true, force: true });
});

function tokenFor(
  overrides: Partial<{ nodeAddress: string; modelId: string; jobId: string }> = {},
  options: { ttlMs?: number; now?: Date; by?: KeyPair } = {},
): string {
  return issueAccessToken(
    options.by ?? issuer,
    {
      nodeAddress: overrides.nodeAddress ?? node.address,
      clientAddress: client.address,
      modelId: overrides.modelId ?? MODEL_ID,
      jobId: overrides.jobId ?? "job-1",
    },
    { ttlMs: options.ttlMs ?? 60_000, ...(options.now === undefined ? {} : { now: options.now }) },
  ).token;
}

function floatTensor(name: string, values: Float32Array, shape: number[]): Tensor {
  return create(TensorSchema, {
    name,
    buffer: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
    shape: shape.map(BigInt),
    dtype: DataType.FLOAT32,
  });
}

function message(tensorList: Tensor[], overrides: Partial<TensorMessage> = {}): TensorMessage {
  return create(TensorMessageSchema, {
    protocolVersion: NODE_PROTOCOL_VERSION,
    callerAddress: client.address,
    targetAddress: node.address,
    modelId: MODEL_ID,
    jobId: "job-1",
    accessToken: tokenFor({ modelId: overrides.modelId ?? MODEL_ID }),
    tensors: tensorList,
    ...overrides,
  });
}

function floatsOf(tensor: Tensor | undefined): Float32Array {
  assert.ok(tensor);
  assert.equal(tensor.dtype, DataType.FLOAT32);
  const copy = Uint8Array.from(tensor.buffer);
  return new Float32Array(copy.buffer);
}

const ROWS = 5;
const inputs = Float32Array.from({ length: ROWS * FEATURES }, (_, i) => Math.cos(i * 0.9) * 1.5);

async function expectCode(call: Promise<unknown>, code: Code, pattern?: RegExp): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    const connectError = ConnectError.from(error);
    assert.equal(Code[connectError.code], Code[code], connectError.message);
    if (pattern !== undefined) assert.match(connectError.rawMessage, pattern);
    return true;
  });
}

test("the node's record lists its models and the tensor capability", () => {
  assert.deepEqual(
    node.record.models.map((model) => model.modelId),
    [MODEL_ID, NO_GRAD_MODEL_ID],
  );
  assert.ok(node.record.capabilities.includes("tensor"));
  const published = node.record.models[0];
  assert.match(published?.content?.digest ?? "", /^sha256:[0-9a-f]{64}$/);
  assert.match(
    published?.content?.uri ?? "",
    /^file:\/\/.*tiny\.onnx$/,
    "validators fetch it there",
  );
  assert.equal(published?.supportsBackward, true);
  assert.equal(node.record.models[1]?.supportsBackward, false);
});

test("Forward returns what onnxruntime computes on the same model", async () => {
  const response = await tensors.forward({
    message: message([floatTensor("input", inputs, [ROWS, FEATURES])]),
  });
  const reply = response.message;
  assert.ok(reply);
  assert.equal(reply.callerAddress, node.address);
  assert.equal(reply.targetAddress, client.address);
  assert.equal(reply.modelId, MODEL_ID);
  assert.equal(reply.accessToken, "");
  assert.equal(reply.tensors.length, 1);
  assert.equal(reply.tensors[0]?.name, "output");
  assert.deepEqual(reply.tensors[0]?.shape, [BigInt(ROWS), BigInt(CLASSES)]);
  const expected = (await onnx.run(inputs, ROWS, FEATURES)).get("output");
  assert.ok(expected);
  const actual = floatsOf(reply.tensors[0]);
  assert.equal(actual.length, ROWS * CLASSES);
  for (let i = 0; i < actual.length; i++) {
    assert.ok(Math.abs((actual[i] ?? 0) - Number(expected.values[i])) <= 1e-6, `element ${i}`);
  }
  assert.ok(response.processTimeUs > 0n);
});

test("concurrent Forward calls each get their own rows back", async () => {
  const calls = Array.from({ length: 6 }, (_, k) => {
    const rows = Float32Array.from({ length: 2 * FEATURES }, (_, i) => (k + 1) * 0.3 - i * 0.2);
    return {
      rows,
      reply: tensors.forward({ message: message([floatTensor("input", rows, [2, FEATURES])]) }),
    };
  });
  for (const { rows, reply } of calls) {
    const expected = (await onnx.run(rows, 2, FEATURES)).get("output");
    const actual = floatsOf((await reply).message?.tensors[0]);
    for (let i = 0; i < actual.length; i++) {
      assert.ok(Math.abs((actual[i] ?? 0) - Number(expected?.values[i])) <= 1e-6);
    }
  }
});

test("Backward returns input gradients equal to finite differences", async () => {
  const outputGrad = Float32Array.from({ length: ROWS * CLASSES }, (_, i) => ((i % 5) - 2) * 0.5);
  const response = await tensors.backward({
    message: message([
      create(TensorSchema, {
        ...floatTensor("input", inputs, [ROWS, FEATURES]),
        requiresGrad: true,
      }),
      floatTensor("grad/output", outputGrad, [ROWS, CLASSES]),
    ]),
  });
  const reply = response.message;
  assert.ok(reply);
  assert.deepEqual(
    reply.tensors.map((tensor) => tensor.name),
    ["grad/input"],
  );
  assert.deepEqual(reply.tensors[0]?.shape, [BigInt(ROWS), BigInt(FEATURES)]);
  const gradient = floatsOf(reply.tensors[0]);

  // L(x) = Σ output(x) · g, per row; dL/dx[r,i] ≈ (L(x + h e_i) − L(x − h e_i)) / 2h.
  const h = 1e-2;
  const lossPerRow = async (x: Float32Array) => {
    const out = (await onnx.run(x, ROWS, FEATURES)).get("output");
    assert.ok(out);
    return Array.from({ length: ROWS }, (_, r) => {
      let sum = 0;
      for (let k = 0; k < CLASSES; k++) {
        sum += Number(out.values[r * CLASSES + k]) * (outputGrad[r * CLASSES + k] ?? 0);
      }
      return sum;
    });
  };
  for (let i = 0; i < FEATURES; i++) {
    const plus = Float32Array.from(inputs);
    const minus = Float32Array.from(inputs);
    for (let r = 0; r < ROWS; r++) {
      plus[r * FEATURES + i] = (plus[r * FEATURES + i] ?? 0) + h;
      minus[r * FEATURES + i] = (minus[r * FEATURES + i] ?? 0) - h;
    }
    const [up, down] = await Promise.all([lossPerRow(plus), lossPerRow(minus)]);
    for (let r = 0; r < ROWS; r++) {
      const numeric = ((up[r] ?? 0) - (down[r] ?? 0)) / (2 * h);
      const analytic = gradient[r * FEATURES + i] ?? Number.NaN;
      assert.ok(
        Math.abs(numeric - analytic) <= 2e-3,
        `d/dx[${r},${i}]: node ${analytic}, finite differences ${numeric}`,
      );
    }
  }
});

test("Backward on a model without backward support is failed_precondition", async () => {
  await expectCode(
    tensors.backward({
      message: message(
        [
          create(TensorSchema, {
            ...floatTensor("input", inputs, [ROWS, FEATURES]),
            requiresGrad: true,
          }),
          floatTensor("grad/output", new Float32Array(ROWS * CLASSES), [ROWS, CLASSES]),
        ],
        { modelId: NO_GRAD_MODEL_ID },
      ),
    }),
    Code.FailedPrecondition,
    /does not support Backward/,
  );
});

test("DescribeEndpoint answers unsigned with the signed record and one sealed synapse per model", async () => {
  const open = createClient(
    TensorService,
    createConnectTransport({ baseUrl: node.url, httpVersion: "1.1" }),
  );
  const all = await open.describeEndpoint({ protocolVersion: NODE_PROTOCOL_VERSION });
  assert.equal(all.node?.address, node.address);
  assert.deepEqual(
    all.synapses.map((synapse) => synapse.model?.modelId),
    [MODEL_ID, NO_GRAD_MODEL_ID],
  );
  for (const synapse of all.synapses) {
    assert.equal(synapse.nodeAddress, node.address);
    assert.ok(verifyRecordSignature(SynapseEndpointSchema, synapse), "synapse signature");
    assert.ok(verifyRecordPow(SynapseEndpointSchema, synapse, 4), "synapse proof of work");
  }
  const one = await open.describeEndpoint({
    protocolVersion: NODE_PROTOCOL_VERSION,
    modelId: NO_GRAD_MODEL_ID,
  });
  assert.equal(one.synapses.length, 1);
  await expectCode(
    open.describeEndpoint({ protocolVersion: NODE_PROTOCOL_VERSION, modelId: "nope" }),
    Code.NotFound,
  );
});

test("an unsigned Forward is unauthenticated", async () => {
  const open = createClient(
    TensorService,
    createConnectTransport({ baseUrl: node.url, httpVersion: "1.1" }),
  );
  await expectCode(
    open.forward({ message: message([floatTensor("input", inputs, [ROWS, FEATURES])]) }),
    Code.Unauthenticated,
  );
});

test("a bad, untrusted or expired token is unauthenticated", async () => {
  const input = [floatTensor("input", inputs, [ROWS, FEATURES])];
  await expectCode(
    tensors.forward({ message: message(input, { accessToken: "not-a.token" }) }),
    Code.Unauthenticated,
    /access_token/,
  );
  await expectCode(
    tensors.forward({ message: message(input, { accessToken: "" }) }),
    Code.Unauthenticated,
    /missing/,
  );
  await expectCode(
    tensors.forward({
      message: message(input, { accessToken: tokenFor({}, { by: generateKeyPair() }) }),
    }),
    Code.Unauthenticated,
    /not an issuer this node trusts/,
  );
  await expectCode(
    tensors.forward({
      message: message(input, {
        accessToken: tokenFor({}, { ttlMs: 1000, now: new Date(Date.now() - 60_000) }),
      }),
    }),
    Code.Unauthenticated,
    /expired/,
  );
});

test("a token for another node, model or job is permission_denied", async () => {
  const input = [floatTensor("input", inputs, [ROWS, FEATURES])];
  await expectCode(
    tensors.forward({
      message: message(input, {
        accessToken: tokenFor({ nodeAddress: generateKeyPair().address }),
      }),
    }),
    Code.PermissionDenied,
    /node/,
  );
  await expectCode(
    tensors.forward({
      message: message(input, { accessToken: tokenFor({ modelId: NO_GRAD_MODEL_ID }) }),
    }),
    Code.PermissionDenied,
    /model/,
  );
  await expectCode(
    tensors.forward({ message: message(input, { jobId: "another-job" }) }),
    Code.PermissionDenied,
    /job/,
  );
});

test("a message naming another caller or another node is permission_denied", async () => {
  const input = [floatTensor("input", inputs, [ROWS, FEATURES])];
  await expectCode(
    tensors.forward({
      message: message(input, { callerAddress: generateKeyPair().address }),
    }),
    Code.PermissionDenied,
    /caller_address/,
  );
  await expectCode(
    tensors.forward({
      message: message(input, { targetAddress: generateKeyPair().address }),
    }),
    Code.PermissionDenied,
    /target_address/,
  );
});

test("a model not served here is not_found", async () => {
  await expectCode(
    tensors.forward({
      message: message([floatTensor("input", inputs, [ROWS, FEATURES])], { modelId: "missing" }),
    }),
    Code.NotFound,
    /missing/,
  );
});

test("a buffer that does not match its shape and dtype is invalid_argument naming the tensor", async () => {
  await expectCode(
    tensors.forward({
      message: message([floatTensor("input", inputs.subarray(0, 7), [ROWS, FEATURES])]),
    }),
    Code.InvalidArgument,
    /tensor "input".*28 bytes.*needs 40/,
  );
  await expectCode(
    tensors.forward({
      message: message([floatTensor("pixels", inputs, [ROWS, FEATURES])]),
    }),
    Code.InvalidArgument,
    /"pixels"/,
  );
  await expectCode(
    tensors.forward({
      message: message([floatTensor("input", inputs, [FEATURES, ROWS])]),
    }),
    Code.InvalidArgument,
    /"input".*dimension 1/,
  );
  await expectCode(
    tensors.forward({ message: message([]) }),
    Code.InvalidArgument,
    /"input".*missing/,
  );
});

test("another protocol major version is failed_precondition; no message is invalid_argument", async () => {
  await expectCode(
    tensors.forward({
      message: message([floatTensor("input", inputs, [ROWS, FEATURES])], {
        protocolVersion: { ...NODE_PROTOCOL_VERSION, major: 2 },
      }),
    }),
    Code.FailedPrecondition,
    /major version 2/,
  );
  await expectCode(tensors.forward({}), Code.InvalidArgument, /message is required/);
});

test("tensors above MAX_TENSOR_BYTES are resource_exhausted naming both sizes", async () => {
  const rows = 600; // 600 × 2 × 4 = 4800 bytes > 4096
  await expectCode(
    tensors.forward({
      message: message([floatTensor("input", new Float32Array(rows * FEATURES), [rows, FEATURES])]),
    }),
    Code.ResourceExhausted,
    /4800 bytes.*4096 bytes \(MAX_TENSOR_BYTES\)/,
  );
  // Above the transport's ceiling (2 × 4096 + 64 KiB) the runtime refuses before the node looks.
  const huge = 20_000;
  await expectCode(
    tensors.forward({
      message: message([floatTensor("input", new Float32Array(huge * FEATURES), [huge, FEATURES])]),
    }),
    Code.ResourceExhausted,
  );
});
