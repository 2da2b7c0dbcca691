import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { clone, create } from "@bufbuild/protobuf";
import {
  ContentRefSchema,
  ModelDescriptorSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import * as ort from "onnxruntime-node";
import { type ContentCache, contentDigestOf, createContentCache } from "./content-cache.js";
import { JobInputError } from "./errors.js";
import { type CatalogModel, readModelCatalog } from "./model-catalog.js";
import { BackwardUnsupportedError, createModelHost } from "./model-host.js";
import { exportOnnx } from "./onnx-export.js";
import { onnx } from "./onnx-proto.js";
import { createRandom } from "./random.js";
import { validateSequentialModel } from "./sequential-model.js";
import { type RawTensor, TensorError, typedView } from "./tensors.js";
import { createNetwork, ensureCpuBackend } from "./tf-network.js";

const CATALOG = fileURLToPath(new URL("../../../examples/models/catalog.json", import.meta.url));
const MODEL_FILE = fileURLToPath(
  new URL("../../../examples/models/blobs-classifier.onnx", import.meta.url),
);

let dir: string;
let cache: ContentCache;
let example: CatalogModel;
let direct: ort.InferenceSession;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-model-host-"));
  cache = createContentCache({ dir: join(dir, "cache") });
  const [model] = await readModelCatalog(CATALOG);
  assert.ok(model);
  example = model;
  direct = await ort.InferenceSession.create(await readFile(MODEL_FILE));
});

after(async () => {
  await direct.release();
  await rm(dir, { recursive: true, force: true });
});

function points(rows: number[][]): RawTensor {
  return {
    name: "input",
    dtype: "float32",
    shape: [rows.length, 2],
    data: new Uint8Array(Float32Array.from(rows.flat()).buffer),
  };
}

function floats(t: RawTensor | undefined): number[] {
  assert.ok(t);
  return Array.from(typedView(t) as Float32Array);
}

async function runDirect(rows: number[][]): Promise<number[]> {
  const out = await direct.run({
    input: new ort.Tensor("float32", Float32Array.from(rows.flat()), [rows.length, 2]),
  });
  return Array.from(out.output?.data as Float32Array);
}

/** A catalog entry for other ONNX bytes written next to the cache. */
async function entryFor(
  bytes: Uint8Array,
  modelId: string,
  keepSpecs = false,
): Promise<CatalogModel> {
  const path = join(dir, `${modelId}.onnx`);
  await writeFile(path, bytes);
  const { digest, sizeBytes } = await contentDigestOf(path);
  const descriptor = clone(ModelDescriptorSchema, example.descriptor);
  descriptor.modelId = modelId;
  descriptor.content = create(ContentRefSchema, {
    digest,
    sizeBytes: BigInt(sizeBytes),
    uri: pathToFileURL(path).href,
    mediaType: "application/onnx",
  });
  if (!keepSpecs) {
    descriptor.inputs = [];
    descriptor.outputs = [];
  }
  return { descriptor, batching: example.batching };
}

test("the example model loads through the cache and forward equals onnxruntime run directly", async () => {
  const host = createModelHost({ cache });
  try {
    const hosted = await host.load(example);
    assert.equal(await host.load(example), hosted);
    assert.equal(host.get("blobs-classifier"), hosted);
    assert.deepEqual(host.list(), [hosted]);
    assert.equal(hosted.supportsBackward, true);
    assert.equal(hosted.descriptor.supportsBackward, true);
    assert.deepEqual(hosted.batching, { maxBatchSize: 32, maxDelayMs: 2 });
    const rows = [
      [-2, -1.5],
      [2, -1],
      [0, 2.5],
    ];
    const [output] = await hosted.forward([points(rows)]);
    assert.deepEqual(output?.shape, [3, 3]);
    assert.equal(output?.name, "output");
    assert.deepEqual(floats(output), await runDirect(rows));
    // The trained classifier puts each blob's centre in its own class.
    const probabilities = floats(output);
    for (let r = 0; r < 3; r++) {
      const row = probabilities.slice(r * 3, r * 3 + 3);
      assert.equal(row.indexOf(Math.max(...row)), r);
    }
  } finally {
    await host.close();
    await host.close();
  }
});

test("50 concurrent forwards are batched and each caller gets exactly its own rows", async () => {
  const host = createModelHost({ cache });
  try {
    const hosted = await host.load(example);
    const requests = Array.from({ length: 50 }, (_, i) =>
      Array.from({ length: (i % 4) + 1 }, (_, r) => [Math.sin(i + r) * 3, Math.cos(i * r) * 3]),
    );
    const results = await Promise.all(requests.map((rows) => hosted.forward([points(rows)])));
    for (const [i, rows] of requests.entries()) {
      const [output] = results[i] ?? [];
      assert.deepEqual(output?.shape, [rows.length, 3]);
      const expected = await runDirect(rows);
      floats(output).forEach((v, j) => {
        assert.ok(Math.abs(v - (expected[j] ?? Number.NaN)) < 1e-6, `request ${i} value ${j}`);
      });
    }
    const stats = hosted.stats();
    assert.equal(
      stats.rows,
      requests.reduce((n, r) => n + r.length, 0),
    );
    assert.ok(stats.batches < 50, `expected batching, got ${stats.batches} runs`);
  } finally {
    await host.close();
  }
});

test("with batching off every forward runs alone", async () => {
  const host = createModelHost({ cache, batching: false });
  try {
    const hosted = await host.load(example);
    await Promise.all([1, 2, 3].map((i) => hosted.forward([points([[i, i]])])));
    assert.deepEqual(hosted.stats(), { batches: 3, rows: 3 });
  } finally {
    await host.close();
  }
});

test("inputs that do not fit the model are TensorErrors naming the tensor", async () => {
  const host = createModelHost({ cache });
  try {
    const hosted = await host.load(example);
    const wide: RawTensor = {
      name: "input",
      dtype: "float32",
      shape: [1, 3],
      data: new Uint8Array(12),
    };
    await assert.rejects(hosted.forward([wide]), (error: unknown) => {
      assert.ok(error instanceof TensorError);
      assert.match(error.message, /tensor "input": shape \[1,3\] dimension 1 must be 2/);
      return true;
    });
    await assert.rejects(hosted.forward([{ ...points([[1, 1]]), name: "x" }]), TensorError);
  } finally {
    await host.close();
  }
});

test("backward equals central finite differences of onnxruntime's forward", async () => {
  const host = createModelHost({ cache });
  try {
    const hosted = await host.load(example);
    const rows = [
      [-1.2, 0.7],
      [0.4, 1.9],
      [1.5, -0.8],
    ];
    const dy = [0.3, -1.1, 0.5, 1.0, 0.2, -0.4, -0.7, 0.9, 0.25];
    const dyTensor: RawTensor = {
      name: "grad/output",
      dtype: "float32",
      shape: [3, 3],
      data: new Uint8Array(Float32Array.from(dy).buffer),
    };
    const [grad] = await hosted.backward([points(rows)], [dyTensor]);
    assert.equal(grad?.name, "grad/input");
    assert.deepEqual(grad?.shape, [3, 2]);
    const loss = async (x: number[][]) =>
      (await runDirect(x)).reduce((sum, v, i) => sum + v * (dy[i] ?? 0), 0);
    const eps = 5e-3;
    const analytic = floats(grad);
    for (let r = 0; r < rows.length; r++) {
      for (let c = 0; c < 2; c++) {
        const plus = rows.map((row) => [...row]);
        const minus = rows.map((row) => [...row]);
        (plus[r] as number[])[c] = (rows[r]?.[c] ?? 0) + eps;
        (minus[r] as number[])[c] = (rows[r]?.[c] ?? 0) - eps;
        const numeric = ((await loss(plus)) - (await loss(minus))) / (2 * eps);
        const got = analytic[r * 2 + c] ?? Number.NaN;
        assert.ok(Math.abs(got - numeric) < 1e-3, `d/dx[${r},${c}]: ${got} vs ${numeric}`);
      }
    }
    await assert.rejects(
      hosted.backward([points(rows)], [{ ...dyTensor, shape: [3, 2], data: new Uint8Array(24) }]),
      /tensor "grad\/output": shape \[3,2\], the output's is \[3,3\]/,
    );
    await assert.rejects(
      hosted.backward([points(rows)], []),
      /tensor "grad\/output": gradient is missing/,
    );
  } finally {
    await host.close();
  }
});

test("other graphs: specs come from the session, no backward, a fixed batch is not batched", async () => {
  const proto = onnx.ModelProto.decode(await readFile(MODEL_FILE));
  // Transposed B in the first Gemm: still valid ONNX, but not this package's export.
  const gemm = proto.graph?.node?.[0];
  assert.ok(gemm);
  const kernel = proto.graph?.initializer?.find((t) => t.name === "dense_0.kernel");
  assert.ok(kernel?.dims);
  kernel.dims = [...kernel.dims].reverse();
  gemm.attribute = [{ name: "transB", type: onnx.AttributeProto.AttributeType.INT, i: 1 }];
  const dims = proto.graph?.input?.[0]?.type?.tensorType?.shape?.dim ?? [];
  dims[0] = onnx.TensorShapeProto.Dimension.create({ dimValue: 4 });
  const entry = await entryFor(onnx.ModelProto.encode(proto).finish(), "transposed");
  const host = createModelHost({ cache });
  try {
    const hosted = await host.load(entry);
    assert.equal(hosted.supportsBackward, false);
    assert.equal(hosted.descriptor.supportsBackward, false);
    assert.deepEqual(
      hosted.descriptor.inputs.map((s) => [s.name, s.shape, s.dtype]),
      [["input", [4n, 2n], "float32"]],
    );
    assert.deepEqual(
      hosted.descriptor.outputs.map((s) => [s.name, s.shape, s.dtype]),
      [["output", [4n, 3n], "float32"]],
    );
    assert.deepEqual(hosted.batching, { maxBatchSize: 1, maxDelayMs: 0 });
    const [output] = await hosted.forward([
      points([
        [0, 0],
        [1, 1],
        [2, 2],
        [3, 3],
      ]),
    ]);
    assert.deepEqual(output?.shape, [4, 3]);
    await assert.rejects(
      hosted.backward(
        [
          points([
            [0, 0],
            [1, 1],
            [2, 2],
            [3, 3],
          ]),
        ],
        [],
      ),
      BackwardUnsupportedError,
    );
  } finally {
    await host.close();
  }
});

test("a model whose bytes do not match the digest, or whose catalog contradicts the graph, is refused", async () => {
  // A cache of its own: the shared one already holds the verified example bytes.
  const host = createModelHost({ cache: createContentCache({ dir: join(dir, "fresh-cache") }) });
  try {
    const entry = await entryFor(await readFile(MODEL_FILE), "tampered");
    const ref = entry.descriptor.content;
    assert.ok(ref);
    await writeFile(fileURLToPath(ref.uri), Buffer.from("not the model"));
    ref.sizeBytes = 0n;
    await assert.rejects(host.load(entry), (error: unknown) => {
      assert.ok(error instanceof JobInputError);
      assert.match(error.message, /do not match digest/);
      return true;
    });
    const wrongName = await entryFor(await readFile(MODEL_FILE), "renamed", true);
    const [input] = wrongName.descriptor.inputs;
    assert.ok(input);
    input.name = "pixels";
    await assert.rejects(
      host.load(wrongName),
      /catalog input "pixels" is not in the graph \(input\)/,
    );
    assert.equal(host.get("renamed"), undefined);
    const wrongShape = await entryFor(await readFile(MODEL_FILE), "reshaped", true);
    const [declared] = wrongShape.descriptor.inputs;
    assert.ok(declared);
    declared.shape = [-1n, 3n];
    await assert.rejects(
      host.load(wrongShape),
      /catalog input "input" has shape \[-1,3\], the graph's is \[-1,2\]/,
    );
  } finally {
    await host.close();
  }
});

test("backward of a tanh/sigmoid/linear export matches finite differences too", async () => {
  await ensureCpuBackend();
  const model = validateSequentialModel({
    format: "tessera.sequential/v1",
    layers: [
      { type: "dense", units: 5, activation: "tanh" },
      { type: "dropout", rate: 0.2 },
      { type: "dense", units: 4, activation: "sigmoid" },
      { type: "dense", units: 2, activation: "linear" },
    ],
    loss: "mse",
  });
  const network = createNetwork(model, 3, { random: createRandom("backward-chain") });
  const bytes = exportOnnx(model, 3, network.weights());
  network.dispose();
  const host = createModelHost({ cache });
  const session = await ort.InferenceSession.create(bytes);
  try {
    const hosted = await host.load(await entryFor(bytes, "chain"));
    assert.equal(hosted.supportsBackward, true);
    const x = [0.2, -0.5, 1.1, -1.3, 0.4, 0.9];
    const dy = [1, -0.5, 0.25, 2];
    const input: RawTensor = {
      name: "input",
      dtype: "float32",
      shape: [2, 3],
      data: new Uint8Array(Float32Array.from(x).buffer),
    };
    const [grad] = await hosted.backward(
      [input],
      [
        {
          name: "grad/output",
          dtype: "float32",
          shape: [2, 2],
          data: new Uint8Array(Float32Array.from(dy).buffer),
        },
      ],
    );
    const loss = async (values: number[]) => {
      const out = await session.run({
        input: new ort.Tensor("float32", Float32Array.from(values), [2, 3]),
      });
      return Array.from(out.output?.data as Float32Array).reduce(
        (sum, v, i) => sum + v * (dy[i] ?? 0),
        0,
      );
    };
    const eps = 5e-3;
    const analytic = floats(grad);
    for (let i = 0; i < x.length; i++) {
      const plus = [...x];
      const minus = [...x];
      plus[i] = (x[i] ?? 0) + eps;
      minus[i] = (x[i] ?? 0) - eps;
      const numeric = ((await loss(plus)) - (await loss(minus))) / (2 * eps);
      assert.ok(
        Math.abs((analytic[i] ?? Number.NaN) - numeric) < 1e-3,
        `d/dx[${i}]: ${analytic[i]} vs ${numeric}`,
      );
    }
  } finally {
    await session.release();
    await host.close();
  }
});
