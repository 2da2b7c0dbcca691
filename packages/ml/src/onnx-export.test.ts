import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import * as ort from "onnxruntime-node";
import { exportOnnx, onnxMetadata } from "./onnx-export.js";
import { createRandom } from "./random.js";
import { runJob } from "./run-job.js";
import { validateSequentialModel } from "./sequential-model.js";
import { jobSpec } from "./test-fixtures.js";
import { createNetwork, ensureCpuBackend, predict } from "./tf-network.js";
import { weightsFromOnnx } from "./weights.js";

async function ortRun(bytes: Uint8Array, features: Float32Array, rows: number, width: number) {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const result = await session.run({ input: new ort.Tensor("float32", features, [rows, width]) });
    return {
      data: Float32Array.from(result.output?.data as Float32Array),
      dims: result.output?.dims,
    };
  } finally {
    await session.release();
  }
}

test("every activation exports to ONNX with the tfjs network's outputs (within 1e-4)", async () => {
  await ensureCpuBackend();
  const model = validateSequentialModel({
    format: "tessera.sequential/v1",
    layers: [
      { type: "dense", units: 7, activation: "relu" },
      { type: "dense", units: 6, activation: "tanh" },
      { type: "dropout", rate: 0.5 },
      { type: "dense", units: 5, activation: "sigmoid" },
      { type: "dense", units: 4 },
      { type: "dense", units: 3, activation: "softmax" },
    ],
    loss: "categorical_crossentropy",
  });
  const network = createNetwork(model, 5, { random: createRandom("export-test") });
  const random = createRandom("inputs");
  const rows = 33;
  const features = Float32Array.from({ length: rows * 5 }, () => random.nextNormal() * 3);
  const expected = predict(network, features, rows, 5);
  const weights = network.weights();
  network.dispose();
  const bytes = exportOnnx(model, 5, weights, { featureNames: ["a", "b", "c", "d", "e"] });
  const { data, dims } = await ortRun(bytes, features, rows, 5);
  assert.deepEqual(dims, [rows, 3]);
  for (let i = 0; i < data.length; i++) {
    assert.ok(Math.abs((data[i] ?? 0) - (expected[i] ?? 0)) <= 1e-4, `value ${i}`);
  }
  const metadata = onnxMetadata(bytes);
  assert.equal(metadata.get("tessera.loss"), "categorical_crossentropy");
  assert.equal(metadata.get("tessera.features"), '["a","b","c","d","e"]');
  // The initializers read back are the exported weights, bit for bit.
  const back = weightsFromOnnx(bytes, 5);
  assert.deepEqual(
    back.map((w) => Array.from(w.kernel)),
    weights.map((w) => Array.from(w.kernel)),
  );
});

test("regression (mse, linear output) trains and its export matches tfjs", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tessera-ml-mse-"));
  try {
    const random = createRandom("regression");
    let csv = "x1,x2,label\n";
    for (let i = 0; i < 200; i++) {
      const x1 = random.next() * 2 - 1;
      const x2 = random.next() * 2 - 1;
      csv += `${x1},${x2},${3 * x1 - 2 * x2 + 0.5}\n`;
    }
    await writeFile(join(dir, "data.csv"), csv);
    await writeFile(
      join(dir, "model.json"),
      JSON.stringify({
        format: "tessera.sequential/v1",
        input_features: 2,
        layers: [{ type: "dense", units: 1 }],
        loss: "mse",
        optimizer: { name: "sgd", learning_rate: 0.1 },
      }),
    );
    const out = await runJob(
      {
        spec: jobSpec(JobType.TRAINING, { epochs: 40, batchSize: 16 }),
        modelPath: join(dir, "model.json"),
        datasetPath: join(dir, "data.csv"),
      },
      { workDir: join(dir, "out"), signal: new AbortController().signal },
    );
    assert.ok((out.finalMetrics["train/loss"] ?? 1) < 1e-3, JSON.stringify(out.finalMetrics));
    assert.equal(out.finalMetrics["train/accuracy"], undefined);
    const evaluation = await runJob(
      {
        spec: jobSpec(JobType.EVALUATION),
        modelPath: join(dir, "out", "model.onnx"),
        datasetPath: join(dir, "data.csv"),
      },
      { workDir: join(dir, "eval"), signal: new AbortController().signal },
    );
    assert.ok(
      (evaluation.finalMetrics["eval/mse"] ?? 1) < 1e-3,
      JSON.stringify(evaluation.finalMetrics),
    );
    assert.equal(evaluation.finalMetrics["eval/accuracy"], undefined);
    const bytes = await readFile(join(dir, "out", "model.onnx"));
    const { data } = await ortRun(bytes, new Float32Array([1, 1]), 1, 2);
    assert.ok(Math.abs((data[0] ?? 0) - 1.5) < 0.05, `prediction ${data[0]}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("binary classification (sigmoid, binary_crossentropy) trains to high accuracy", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tessera-ml-bce-"));
  try {
    const random = createRandom("binary");
    const lines = [];
    for (let i = 0; i < 200; i++) {
      const x = random.nextNormal();
      const y = random.nextNormal();
      lines.push(JSON.stringify({ x: [x, y], spam: x + y > 0 }));
    }
    await writeFile(join(dir, "data.ndjson"), `${lines.join("\n")}\n`);
    await writeFile(
      join(dir, "model.json"),
      JSON.stringify({
        format: "tessera.sequential/v1",
        layers: [
          { type: "dense", units: 8, activation: "relu" },
          { type: "dense", units: 1, activation: "sigmoid" },
        ],
        loss: "binary_crossentropy",
        optimizer: { name: "rmsprop", learning_rate: 0.02 },
      }),
    );
    const out = await runJob(
      {
        spec: jobSpec(JobType.TRAINING, {
          epochs: 20,
          hyperparameters: { label_column: "spam", validation_split: "0.25" },
        }),
        modelPath: join(dir, "model.json"),
        datasetPath: join(dir, "data.ndjson"),
      },
      { workDir: join(dir, "out"), signal: new AbortController().signal },
    );
    assert.ok((out.finalMetrics["test/accuracy"] ?? 0) >= 0.9, JSON.stringify(out.finalMetrics));
    const metrics = JSON.parse(await readFile(join(dir, "out", "metrics.json"), "utf8"));
    assert.deepEqual(metrics.features, ["x[0]", "x[1]"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
