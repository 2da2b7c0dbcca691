/**
 * One inference task through a real hosted model (the tiny ONNX classifier loaded by the ml model
 * host from a catalog, digest-checked): outputs equal onnxruntime's, the completion is signed over
 * SHA-256 of the output, and tasks not meant for this node fail with a reason.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { sha256 } from "@tessera/identity/hash";
import { generateKeyPair } from "@tessera/identity/keys";
import { verifyComputeCompletion } from "@tessera/identity/validation-bundle";
import { createContentCache } from "@tessera/ml/content-cache";
import { type OnnxModel, openOnnxModel } from "@tessera/ml/onnx-runner";
import {
  packRawTensors,
  RAW_TENSORS_MEDIA_TYPE,
  typedView,
  unpackRawTensors,
} from "@tessera/ml/tensors";
import {
  PreprocessingTermsSchema,
  PreprocessingValidationSchema,
  RouteSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  InferenceOutcome,
  type InferenceResult,
  type InferenceTask,
  InferenceTaskSchema,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { createLogger } from "@tessera/runtime";
import {
  type HostedModels,
  loadHostedModels,
  publishedDescriptor,
} from "../models/hosted-models.js";
import { TINY_CLASSES, TINY_FEATURES, writeTinyCatalog } from "../test-tiny-model.js";
import { runInferenceTask } from "./inference-task.js";

const logger = createLogger({ service: "compute-node", level: "silent" });
const MODEL_ID = "tiny";
const keyPair = generateKeyPair();

let dir: string;
let hosted: HostedModels;
let onnx: OnnxModel;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-inference-task-"));
  const { path, bytes } = await writeTinyCatalog(dir, [
    { modelId: MODEL_ID, supportsBackward: true },
  ]);
  hosted = await loadHostedModels({
    modelsFile: path,
    cache: createContentCache({ dir: join(dir, "cache") }),
    logger,
  });
  onnx = await openOnnxModel(bytes);
});

after(async () => {
  await hosted?.close();
  await onnx?.close();
  await rm(dir, { recursive: true, force: true });
});

type TaskFields = Omit<MessageInitShape<typeof InferenceTaskSchema>, "$typeName">;

const rows = [
  [0.5, -1.25],
  [2, 0.75],
  [-1.5, 0.1],
];
const flat = Float32Array.from(rows.flat());

function task(fields: TaskFields = {}): InferenceTask {
  const { bytes, specs } = packRawTensors([
    {
      name: "input",
      dtype: "float32",
      shape: [rows.length, TINY_FEATURES],
      data: new Uint8Array(flat.buffer),
    },
  ]);
  return create(InferenceTaskSchema, {
    requestId: "req-1",
    modelId: MODEL_ID,
    input: bytes,
    inputMediaType: RAW_TENSORS_MEDIA_TYPE,
    inputTensors: specs,
    assignedComputeNodeAddress: keyPair.address,
    ...fields,
  });
}

function run(t: InferenceTask, signal = new AbortController().signal) {
  return runInferenceTask(t, { keyPair, model: (id) => hosted.host.get(id), logger }, signal);
}

async function assertMatchesOnnx(result: InferenceResult): Promise<void> {
  assert.equal(result.outcome, InferenceOutcome.SUCCEEDED, result.errorMessage);
  const [output] = unpackRawTensors(result.output, result.outputTensors);
  assert.ok(output);
  assert.equal(output.name, "output");
  assert.deepEqual(output.shape, [rows.length, TINY_CLASSES]);
  const expected = (await onnx.run(flat, rows.length, TINY_FEATURES)).get("output");
  const actual = typedView(output) as Float32Array;
  for (let i = 0; i < actual.length; i++) {
    assert.ok(Math.abs((actual[i] ?? 0) - Number(expected?.values[i])) <= 1e-6, `element ${i}`);
  }
}

test("the catalog's model is hosted and published with its digest and URI", () => {
  assert.deepEqual(
    hosted.models.map((model) => model.descriptor.modelId),
    [MODEL_ID],
  );
  assert.ok(hosted.maxBatchSize >= 1);
  const [model] = hosted.models;
  assert.ok(model);
  assert.match(model.descriptor.content?.uri ?? "", /^file:\/\//);
  const published = publishedDescriptor(model);
  // Validators fetch the model from the published URI to re-run tasks.
  assert.equal(published.content?.uri, model.descriptor.content?.uri);
  assert.equal(published.content?.digest, model.descriptor.content?.digest);
  assert.equal(published.supportsBackward, true);
});

test("raw-tensor input: outputs equal onnxruntime's, the completion signs SHA-256 of the output", async () => {
  const result = await run(task());
  await assertMatchesOnnx(result);
  assert.equal(result.outputMediaType, RAW_TENSORS_MEDIA_TYPE);
  const completion = result.computeCompletion;
  assert.ok(completion);
  assert.equal(completion.requestId, "req-1");
  assert.equal(completion.computeNodeAddress, keyPair.address);
  assert.deepEqual(completion.resultHash, sha256(result.output));
  assert.ok(verifyComputeCompletion(completion));
});

test("JSON input gives the same result bytes as raw tensors", async () => {
  const raw = await run(task());
  const json = await run(
    task({
      input: new TextEncoder().encode(JSON.stringify({ input: rows })),
      inputMediaType: "application/json",
      inputTensors: [],
    }),
  );
  await assertMatchesOnnx(json);
  assert.deepEqual(json.output, raw.output);
});

test("tasks not meant for this node, or whose approval lapsed, fail with a reason", async () => {
  const other = generateKeyPair().address;
  const approval = (node: string, expiresAt: Date) =>
    create(PreprocessingValidationSchema, {
      terms: create(PreprocessingTermsSchema, {
        requestId: "req-1",
        modelId: MODEL_ID,
        route: create(RouteSchema, { computeNodeAddress: node }),
        expiresAt: timestampFromDate(expiresAt),
      }),
    });
  const cases: Array<[TaskFields, RegExp]> = [
    [{ assignedComputeNodeAddress: other }, /assigned to/],
    [{ modelId: "unknown" }, /not hosted/],
    [{ preprocessingValidation: approval(other, new Date(Date.now() + 60_000)) }, /routes it to/],
    [
      { preprocessingValidation: approval(keyPair.address, new Date(Date.now() - 1000)) },
      /expired/,
    ],
    [{ inputMediaType: "text/plain" }, /media type/],
  ];
  for (const [fields, reason] of cases) {
    const result = await run(task(fields));
    assert.equal(result.outcome, InferenceOutcome.FAILED);
    assert.match(result.errorMessage, reason);
    assert.equal(result.output.length, 0);
    assert.ok(result.computeCompletion && verifyComputeCompletion(result.computeCompletion));
  }
  const approved = await run(
    task({ preprocessingValidation: approval(keyPair.address, new Date(Date.now() + 60_000)) }),
  );
  await assertMatchesOnnx(approved);
});

test("an aborted task yields no result", async () => {
  const abort = new AbortController();
  abort.abort(new Error("cancelled"));
  await assert.rejects(run(task(), abort.signal), /cancelled/);
});

test("a model whose bytes do not match the catalog's digest fails the start, naming it", async () => {
  const badDir = await mkdtemp(join(tmpdir(), "tessera-inference-task-bad-"));
  try {
    const { path } = await writeTinyCatalog(
      badDir,
      [{ modelId: "tampered", supportsBackward: false }],
      {
        digest: `sha256:${"0".repeat(64)}`,
      },
    );
    await assert.rejects(
      loadHostedModels({
        modelsFile: path,
        cache: createContentCache({ dir: join(badDir, "cache") }),
        logger,
      }),
      /model tampered/,
    );
  } finally {
    await rm(badDir, { recursive: true, force: true });
  }
});
