import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import * as ort from "onnxruntime-node";
import { JobInputError } from "./errors.js";
import { digestFile } from "./files.js";
import type { JobRunOutput, ProgressEvent } from "./job-run.js";
import { runJob } from "./run-job.js";
import { parseSequentialModel } from "./sequential-model.js";
import { blobsCsv, blobsNdjson, gaussianBlobs, jobSpec } from "./test-fixtures.js";
import { createNetwork, ensureCpuBackend, predict } from "./tf-network.js";
import { parseWeights } from "./weights.js";

const MODEL = {
  format: "tessera.sequential/v1",
  layers: [
    { type: "dense", units: 16, activation: "relu" },
    { type: "dropout", rate: 0.1 },
    { type: "dense", units: 8, activation: "tanh" },
    { type: "dense", units: 3, activation: "softmax" },
  ],
  loss: "sparse_categorical_crossentropy",
  optimizer: { name: "adam", learning_rate: 0.02 },
};

const TRAIN = {
  epochs: 15,
  batchSize: 32,
  hyperparameters: { seed: "7", validation_split: "0.2" },
};

function artifact(output: JobRunOutput, name: string) {
  const found = output.artifacts.find((a) => a.name === name);
  assert.ok(found, `artifact ${name}`);
  return found;
}

async function onnxOutputs(path: string, features: Float32Array, rows: number, width: number) {
  const session = await ort.InferenceSession.create(path);
  try {
    const result = await session.run({ input: new ort.Tensor("float32", features, [rows, width]) });
    return Float32Array.from(result.output?.data as Float32Array);
  } finally {
    await session.release();
  }
}

describe("training, inference and evaluation on 3-class Gaussian blobs", () => {
  let dir: string;
  let trainCsv: string;
  let testNdjson: string;
  let modelPath: string;
  const testRows = gaussianBlobs({ rows: 90, classes: 3, features: 4, seed: 2, spread: 1.2 });
  let trained: JobRunOutput;
  const events: ProgressEvent[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-ml-train-"));
    trainCsv = join(dir, "train.csv");
    testNdjson = join(dir, "test.ndjson");
    modelPath = join(dir, "model.json");
    await writeFile(
      trainCsv,
      blobsCsv(gaussianBlobs({ rows: 300, classes: 3, features: 4, seed: 1, spread: 1.2 })),
    );
    await writeFile(testNdjson, blobsNdjson(testRows));
    await writeFile(modelPath, JSON.stringify(MODEL));
    trained = await runJob(
      {
        spec: jobSpec(JobType.TRAINING, TRAIN),
        modelPath,
        datasetPath: trainCsv,
        datasetMediaType: "text/csv",
      },
      {
        workDir: join(dir, "run-1"),
        signal: new AbortController().signal,
        onProgress: (e) => events.push(e),
      },
    );
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("training reaches at least 0.9 accuracy and reports every epoch", () => {
    assert.ok(
      (trained.finalMetrics["train/accuracy"] ?? 0) >= 0.9,
      JSON.stringify(trained.finalMetrics),
    );
    assert.ok(
      (trained.finalMetrics["test/accuracy"] ?? 0) >= 0.9,
      JSON.stringify(trained.finalMetrics),
    );
    assert.equal(trained.finalMetrics["train/samples"], 240);
    assert.equal(trained.finalMetrics["test/samples"], 60);
    const epochs = events.filter((e) => e.metrics !== undefined);
    assert.deepEqual(
      epochs.map((e) => e.epoch),
      Array.from({ length: 15 }, (_, i) => i + 1),
    );
    for (const e of epochs) {
      assert.ok(Number.isFinite(e.metrics?.["train/loss"]));
      assert.ok(Number.isFinite(e.metrics?.["test/loss"]));
      assert.ok(e.progress > 0 && e.progress <= 1);
    }
    assert.equal(epochs.at(-1)?.progress, 1);
    const firstLoss = epochs[0]?.metrics?.["train/loss"] ?? 0;
    const lastLoss = epochs.at(-1)?.metrics?.["train/loss"] ?? 1;
    assert.ok(lastLoss < firstLoss / 2, "the loss falls");
  });

  test("artifacts: ONNX model, weights document, metrics with the epoch history", async () => {
    assert.deepEqual(
      trained.artifacts.map((a) => [a.name, a.mediaType]),
      [
        ["model", "application/onnx"],
        ["weights", "application/vnd.tessera.weights+json"],
        ["metrics", "application/json"],
      ],
    );
    const metrics = JSON.parse(await readFile(artifact(trained, "metrics").path, "utf8"));
    assert.equal(metrics.history.length, 15);
    assert.deepEqual(metrics.final, trained.finalMetrics);
    assert.deepEqual(metrics.features, ["f0", "f1", "f2", "f3"]);
    const weights = parseWeights(await readFile(artifact(trained, "weights").path, "utf8"));
    assert.deepEqual(
      weights.map((w) => [w.inputs, w.units]),
      [
        [4, 16],
        [16, 8],
        [8, 3],
      ],
    );
  });

  test("the ONNX export computes what the tfjs network computes (within 1e-4)", async () => {
    const weights = parseWeights(await readFile(artifact(trained, "weights").path, "utf8"));
    const features = Float32Array.from(testRows.flatMap((row) => row.x));
    await ensureCpuBackend();
    const network = createNetwork(parseSequentialModel(JSON.stringify(MODEL)), 4, { weights });
    const expected = predict(network, features, testRows.length, 4);
    network.dispose();
    const actual = await onnxOutputs(artifact(trained, "model").path, features, testRows.length, 4);
    assert.equal(actual.length, expected.length);
    let worst = 0;
    for (let i = 0; i < actual.length; i++)
      worst = Math.max(worst, Math.abs((actual[i] ?? 0) - (expected[i] ?? 0)));
    assert.ok(worst <= 1e-4, `largest difference ${worst}`);
  });

  test("a seeded run is reproducible: identical artifact bytes", async () => {
    const again = await runJob(
      { spec: jobSpec(JobType.TRAINING, TRAIN), modelPath, datasetPath: trainCsv },
      { workDir: join(dir, "run-2"), signal: new AbortController().signal },
    );
    for (const name of ["model", "weights", "metrics"]) {
      assert.equal(
        (await digestFile(artifact(again, name).path)).digest,
        (await digestFile(artifact(trained, name).path)).digest,
        name,
      );
    }
    const otherSeed = await runJob(
      {
        spec: jobSpec(JobType.TRAINING, { ...TRAIN, epochs: 1, hyperparameters: { seed: "8" } }),
        modelPath,
        datasetPath: trainCsv,
      },
      { workDir: join(dir, "run-3"), signal: new AbortController().signal },
    );
    assert.notEqual(
      (await digestFile(artifact(otherSeed, "weights").path)).digest,
      (await digestFile(artifact(trained, "weights").path)).digest,
    );
  });

  test("inference writes one predictions line per row, equal to a direct onnxruntime run", async () => {
    const progress: ProgressEvent[] = [];
    const out = await runJob(
      {
        spec: jobSpec(JobType.INFERENCE, { batchSize: 16 }),
        modelPath: artifact(trained, "model").path,
        modelMediaType: "application/onnx",
        datasetPath: testNdjson,
        datasetMediaType: "application/x-ndjson",
      },
      {
        workDir: join(dir, "infer"),
        signal: new AbortController().signal,
        onProgress: (e) => progress.push(e),
      },
    );
    assert.deepEqual(
      out.artifacts.map((a) => a.name),
      ["predictions", "metrics"],
    );
    assert.equal(out.finalMetrics["eval/samples"], 90);
    const lines = (await readFile(artifact(out, "predictions").path, "utf8")).trimEnd().split("\n");
    assert.equal(lines.length, 90);
    const features = Float32Array.from(testRows.flatMap((row) => row.x));
    const direct = await onnxOutputs(artifact(trained, "model").path, features, 90, 4);
    lines.forEach((line, r) => {
      const parsed = JSON.parse(line) as { output: number[] };
      assert.deepEqual(Object.keys(parsed), ["output"]);
      assert.deepEqual(parsed.output, Array.from(direct.subarray(r * 3, r * 3 + 3)));
    });
    assert.equal(progress.at(-1)?.progress, 1);
    assert.equal(progress.at(-1)?.samplesProcessed, 90);
  });

  test("evaluation reports loss and accuracy of the trained model on held-out data", async () => {
    const out = await runJob(
      {
        spec: jobSpec(JobType.EVALUATION),
        modelPath: artifact(trained, "model").path,
        datasetPath: testNdjson,
      },
      { workDir: join(dir, "eval"), signal: new AbortController().signal },
    );
    const metrics = out.finalMetrics;
    assert.ok((metrics["eval/accuracy"] ?? 0) >= 0.9, JSON.stringify(metrics));
    assert.ok(
      (metrics["eval/loss"] ?? 99) > 0 && (metrics["eval/loss"] ?? 99) < 0.5,
      JSON.stringify(metrics),
    );
    assert.equal(metrics["eval/samples"], 90);
    const doc = JSON.parse(await readFile(artifact(out, "metrics").path, "utf8"));
    assert.equal(doc.loss, "sparse_categorical_crossentropy");
    assert.deepEqual(doc.final, metrics);
  });

  test("a document with trained weights runs for evaluation like its ONNX export", async () => {
    const viaDocument = await runJob(
      {
        spec: jobSpec(JobType.EVALUATION),
        modelPath,
        initialWeightsPath: artifact(trained, "weights").path,
        datasetPath: testNdjson,
      },
      { workDir: join(dir, "eval-doc"), signal: new AbortController().signal },
    );
    const viaOnnx = await runJob(
      {
        spec: jobSpec(JobType.EVALUATION),
        modelPath: artifact(trained, "model").path,
        datasetPath: testNdjson,
      },
      { workDir: join(dir, "eval-onnx"), signal: new AbortController().signal },
    );
    assert.deepEqual(viaDocument.finalMetrics, viaOnnx.finalMetrics);
  });

  test("training continues from initial weights given as the exported ONNX model", async () => {
    const out = await runJob(
      {
        spec: jobSpec(JobType.TRAINING, { epochs: 1, hyperparameters: { seed: "3" } }),
        modelPath,
        datasetPath: trainCsv,
        initialWeightsPath: artifact(trained, "model").path,
      },
      { workDir: join(dir, "continue"), signal: new AbortController().signal },
    );
    // Starting from trained weights, one epoch is already accurate.
    assert.ok((out.finalMetrics["train/accuracy"] ?? 0) >= 0.9, JSON.stringify(out.finalMetrics));
  });

  test("an aborted training stops with the signal's reason", async () => {
    const controller = new AbortController();
    const run = runJob(
      { spec: jobSpec(JobType.TRAINING, { epochs: 500 }), modelPath, datasetPath: trainCsv },
      {
        workDir: join(dir, "aborted"),
        signal: controller.signal,
        onProgress: (e) => {
          if (e.epoch === 2 && e.metrics) controller.abort(new Error("lease lost"));
        },
      },
    );
    await assert.rejects(run, /lease lost/);
  });

  test("bad input is a JobInputError naming the problem", async () => {
    const badLabels = join(dir, "bad.csv");
    await writeFile(badLabels, "f0,f1,f2,f3,label\n1,2,3,4,0\n1,2,3,4,5\n");
    await assert.rejects(
      runJob(
        { spec: jobSpec(JobType.TRAINING), modelPath, datasetPath: badLabels },
        { workDir: join(dir, "bad"), signal: new AbortController().signal },
      ),
      (error: unknown) =>
        error instanceof JobInputError &&
        /label column "label", row 2: 5 is not a class id/.test(error.message),
    );
    await assert.rejects(
      runJob(
        {
          spec: jobSpec(JobType.TRAINING, { hyperparameters: { learning_rate: "fast" } }),
          modelPath,
          datasetPath: trainCsv,
        },
        { workDir: join(dir, "bad"), signal: new AbortController().signal },
      ),
      /hyperparameters\.learning_rate must be a number > 0/,
    );
    await assert.rejects(
      runJob(
        {
          spec: jobSpec(JobType.INFERENCE, { hyperparameters: { feature_columns: "f0,f1" } }),
          modelPath: artifact(trained, "model").path,
          datasetPath: testNdjson,
        },
        { workDir: join(dir, "bad"), signal: new AbortController().signal },
      ),
      /takes 4 features per row, the dataset gives 2/,
    );
    await assert.rejects(
      runJob(
        { spec: jobSpec(JobType.UNSPECIFIED), datasetPath: testNdjson },
        { workDir: join(dir, "bad"), signal: new AbortController().signal },
      ),
      /spec.job_type UNSPECIFIED is not supported/,
    );
  });
});
