import assert from "node:assert/strict";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { resultHash, resultManifest } from "@tessera/identity/result-manifest";
import { type ContentRef, ContentRefSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { JobSchema, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { ExecutionEvidenceSchema } from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import {
  createBatchReexecutor,
  JOB_EVIDENCE_MEDIA_TYPE,
  type ReexecutionTask,
  sampleRowIndices,
} from "./batch-reexecutor.js";
import { digestFile } from "./files.js";
import { exportOnnx } from "./onnx-export.js";
import { createRandom } from "./random.js";
import { runJob } from "./run-job.js";
import { validateSequentialModel } from "./sequential-model.js";
import { blobsCsv, gaussianBlobs, jobSpec } from "./test-fixtures.js";
import { createNetwork, ensureCpuBackend } from "./tf-network.js";

let dir: string;
/** The job server's artifacts in this test: id → file. */
const store = new Map<string, string>();
let fetches = 0;
let modelRef: ContentRef;
let datasetRef: ContentRef;
let predictionsPath: string;
let inferenceMetricsPath: string;
let evaluationMetricsPath: string;
let evaluationFinal: Record<string, number>;

async function publish(id: string, path: string, mediaType: string): Promise<ContentRef> {
  store.set(id, path);
  const { digest, sizeBytes } = await digestFile(path);
  return create(ContentRefSchema, {
    digest,
    sizeBytes: BigInt(sizeBytes),
    uri: `artifact://${id}`,
    mediaType,
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-ml-reexec-"));
  await ensureCpuBackend();
  const model = validateSequentialModel({
    format: "tessera.sequential/v1",
    layers: [
      { type: "dense", units: 8, activation: "relu" },
      { type: "dense", units: 3, activation: "softmax" },
    ],
    loss: "sparse_categorical_crossentropy",
  });
  const network = createNetwork(model, 4, { random: createRandom("reexec-model") });
  const weights = network.weights();
  network.dispose();
  await writeFile(join(dir, "model.onnx"), exportOnnx(model, 4, weights));
  await writeFile(
    join(dir, "data.csv"),
    blobsCsv(gaussianBlobs({ rows: 120, classes: 3, features: 4, seed: 9 })),
  );
  modelRef = await publish("model-1", join(dir, "model.onnx"), "application/onnx");
  datasetRef = await publish("data-1", join(dir, "data.csv"), "text/csv");

  const inference = await runJob(
    {
      spec: jobSpec(JobType.INFERENCE, { batchSize: 50 }),
      modelPath: join(dir, "model.onnx"),
      datasetPath: join(dir, "data.csv"),
    },
    { workDir: join(dir, "infer"), signal: new AbortController().signal },
  );
  predictionsPath = inference.artifacts.find((a) => a.name === "predictions")?.path ?? "";
  inferenceMetricsPath = inference.artifacts.find((a) => a.name === "metrics")?.path ?? "";
  const evaluation = await runJob(
    {
      spec: jobSpec(JobType.EVALUATION),
      modelPath: join(dir, "model.onnx"),
      datasetPath: join(dir, "data.csv"),
    },
    { workDir: join(dir, "eval"), signal: new AbortController().signal },
  );
  evaluationMetricsPath = evaluation.artifacts.find((a) => a.name === "metrics")?.path ?? "";
  evaluationFinal = { ...evaluation.finalMetrics };
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function reexecutor(options: { sampleRows?: number } = {}) {
  return createBatchReexecutor({
    cacheDir: join(dir, `cache-${Math.random().toString(36).slice(2)}`),
    ...options,
    fetchArtifact: async (ref, destPath) => {
      fetches++;
      const source = store.get(ref.uri.slice("artifact://".length));
      if (source === undefined) throw new Error(`no artifact ${ref.uri}`);
      await copyFile(source, destPath);
    },
  });
}

/** The validation task a job server would send for a job with `artifacts` (name → file). */
async function taskFor(
  jobId: string,
  jobType: JobType,
  artifacts: Record<string, string>,
  options: {
    finalMetrics?: Record<string, number>;
    datasetUri?: string;
    signedHash?: Uint8Array;
  } = {},
): Promise<ReexecutionTask> {
  const results = [];
  for (const [name, path] of Object.entries(artifacts)) {
    results.push({
      name,
      content: await publish(`${jobId}-${name}`, path, "application/octet-stream"),
    });
  }
  const job = create(JobSchema, {
    spec: {
      jobId,
      jobType,
      model: { content: modelRef },
      dataset:
        options.datasetUri === undefined ? datasetRef : { ...datasetRef, uri: options.datasetUri },
      batchSize: 32,
    },
    result: { jobId, artifacts: results, finalMetrics: options.finalMetrics ?? {} },
  });
  const entries = results.map((r) => ({ name: r.name, digest: r.content.digest }));
  const manifest = resultManifest(entries);
  return {
    requestId: jobId,
    modelId: "blobs",
    subnetId: 0n,
    computeNodeAddress: "tsr1node",
    resultHash: options.signedHash ?? resultHash(entries),
    evidence: create(ExecutionEvidenceSchema, {
      result: { case: "resultData", value: new TextEncoder().encode(manifest) },
      resultMediaType: "text/vnd.tessera.result-manifest",
      input: { case: "inputData", value: toBinary(JobSchema, job) },
      inputMediaType: JOB_EVIDENCE_MEDIA_TYPE,
    }),
  };
}

test("honest inference predictions agree", async () => {
  const executor = reexecutor();
  const task = await taskFor("job-honest", JobType.INFERENCE, {
    predictions: predictionsPath,
    metrics: inferenceMetricsPath,
  });
  assert.equal(executor.supports(task), true);
  assert.deepEqual(await executor.reexecute(task, new AbortController().signal), { agrees: true });
});

test("tampered predictions disagree, with a reason that quotes no values", async () => {
  const lines = (await readFile(predictionsPath, "utf8")).trimEnd().split("\n");
  const tampered = lines.map((line) => {
    const row = JSON.parse(line) as { output: number[] };
    row.output[0] = (row.output[0] ?? 0) + 0.01;
    return JSON.stringify(row);
  });
  const tamperedPath = join(dir, "tampered.ndjson");
  await writeFile(tamperedPath, `${tampered.join("\n")}\n`);
  const executor = reexecutor();
  const verdict = await executor.reexecute(
    await taskFor("job-tampered", JobType.INFERENCE, {
      predictions: tamperedPath,
      metrics: inferenceMetricsPath,
    }),
    new AbortController().signal,
  );
  assert.equal(verdict.agrees, false);
  assert.match(
    verdict.reason ?? "",
    /predictions row \d+, output "output" differs from re-execution beyond tolerance/,
  );
  assert.doesNotMatch(verdict.reason ?? "", /\d\.\d{5,}/);

  // One tampered row out of 120 is caught when the sample covers it.
  const oneRow = [...lines];
  const target = sampleRowIndices("job-one-row", lines.length, 8)[3] ?? 0;
  const row = JSON.parse(oneRow[target] ?? "{}") as { output: number[] };
  row.output = [...row.output].reverse();
  oneRow[target] = JSON.stringify(row);
  await writeFile(join(dir, "one-row.ndjson"), `${oneRow.join("\n")}\n`);
  const small = reexecutor({ sampleRows: 8 });
  const caught = await small.reexecute(
    await taskFor("job-one-row", JobType.INFERENCE, {
      predictions: join(dir, "one-row.ndjson"),
      metrics: inferenceMetricsPath,
    }),
    new AbortController().signal,
  );
  assert.equal(caught.agrees, false);
  assert.match(caught.reason ?? "", new RegExp(`predictions row ${target + 1},`));

  const missing = join(dir, "short.ndjson");
  await writeFile(missing, `${lines.slice(1).join("\n")}\n`);
  const short = await executor.reexecute(
    await taskFor("job-short", JobType.INFERENCE, {
      predictions: missing,
      metrics: inferenceMetricsPath,
    }),
    new AbortController().signal,
  );
  assert.deepEqual(short, {
    agrees: false,
    reason: "tessera-ml-batch: predictions have 119 lines for 120 dataset rows",
  });
});

test("artifacts that do not hash to the signed result hash disagree before anything is fetched", async () => {
  const executor = reexecutor();
  const task = await taskFor(
    "job-unsigned",
    JobType.INFERENCE,
    { predictions: predictionsPath },
    { signedHash: new Uint8Array(32).fill(7) },
  );
  const before = fetches;
  const verdict = await executor.reexecute(task, new AbortController().signal);
  assert.equal(verdict.agrees, false);
  assert.match(verdict.reason ?? "", /do not hash to the signed result hash/);
  assert.equal(fetches, before);
  const other = await taskFor("job-a", JobType.INFERENCE, { predictions: predictionsPath });
  assert.deepEqual(
    await executor.reexecute({ ...other, requestId: "job-b" }, new AbortController().signal),
    {
      agrees: false,
      reason: "tessera-ml-batch: the job record is for another job",
    },
  );
});

test("evaluation metrics are recomputed: honest agree, inflated accuracy disagrees", async () => {
  const executor = reexecutor();
  const honest = await taskFor(
    "job-eval",
    JobType.EVALUATION,
    { metrics: evaluationMetricsPath },
    { finalMetrics: evaluationFinal },
  );
  assert.equal(executor.supports(honest), true);
  assert.deepEqual(await executor.reexecute(honest, new AbortController().signal), {
    agrees: true,
  });

  const doc = JSON.parse(await readFile(evaluationMetricsPath, "utf8"));
  doc.final["eval/accuracy"] = Math.min(1, doc.final["eval/accuracy"] + 0.1);
  if (doc.final["eval/accuracy"] === evaluationFinal["eval/accuracy"])
    doc.final["eval/accuracy"] -= 0.2;
  await writeFile(join(dir, "inflated.json"), JSON.stringify(doc));
  const verdict = await executor.reexecute(
    await taskFor(
      "job-eval-2",
      JobType.EVALUATION,
      { metrics: join(dir, "inflated.json") },
      { finalMetrics: doc.final },
    ),
    new AbortController().signal,
  );
  assert.deepEqual(verdict, {
    agrees: false,
    reason:
      "tessera-ml-batch: metric eval/accuracy of the metrics artifact differs from re-execution beyond tolerance 0.0001",
  });
});

test("supports only INFERENCE and EVALUATION job evidence with fetchable inputs", async () => {
  const executor = reexecutor();
  const training = await taskFor("job-train", JobType.TRAINING, { metrics: evaluationMetricsPath });
  assert.equal(executor.supports(training), false);
  const local = await taskFor(
    "job-local",
    JobType.INFERENCE,
    { predictions: predictionsPath },
    { datasetUri: "file:///data/x.csv" },
  );
  assert.equal(executor.supports(local), false);
  const inference = await taskFor("job-x", JobType.INFERENCE, { predictions: predictionsPath });
  assert.equal(
    executor.supports({
      ...inference,
      evidence: { ...inference.evidence, inputMediaType: "application/json" },
    }),
    false,
  );
});

test("the sample of rows is a deterministic function of the job id", () => {
  const a = sampleRowIndices("job-1", 1000, 32);
  assert.deepEqual(sampleRowIndices("job-1", 1000, 32), a);
  assert.equal(new Set(a).size, 32);
  assert.ok(a.every((row, i) => row >= 0 && row < 1000 && (i === 0 || row > (a[i - 1] ?? -1))));
  assert.notDeepEqual(sampleRowIndices("job-2", 1000, 32), a);
  assert.deepEqual(sampleRowIndices("job-1", 5, 32), [0, 1, 2, 3, 4]);
});
