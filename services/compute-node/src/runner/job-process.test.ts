/**
 * The job process runner on real work: @tessera/ml training jobs in a forked worker, with the
 * node enforcing their time and memory limits from outside.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { type JobSpec, JobSpecSchema, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { type JobProcessOutcome, runJobInProcess } from "./job-process.js";
import type { WorkerProgress } from "./worker-messages.js";

const MIB = 1024 * 1024;
let dir: string;
let datasetPath: string;

/** A three-class dataset of two features, deterministic. */
function dataset(rows: number): string {
  const lines = ["x1,x2,label"];
  for (let i = 0; i < rows; i++) {
    const label = i % 3;
    const x1 = label * 2 + ((i * 37) % 100) / 100;
    const x2 = -label + ((i * 53) % 100) / 100;
    lines.push(`${x1.toFixed(3)},${x2.toFixed(3)},${label}`);
  }
  return `${lines.join("\n")}\n`;
}

function modelDocument(hiddenUnits: readonly number[]): string {
  return JSON.stringify({
    format: "tessera.sequential/v1",
    layers: [
      ...hiddenUnits.map((units) => ({ type: "dense", units, activation: "relu" })),
      { type: "dense", units: 3, activation: "softmax" },
    ],
    loss: "sparse_categorical_crossentropy",
    optimizer: { name: "adam", learning_rate: 0.01 },
  });
}

async function modelFile(name: string, hiddenUnits: readonly number[]): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, modelDocument(hiddenUnits));
  return path;
}

function trainingSpec(jobId: string, epochs: number): JobSpec {
  return create(JobSpecSchema, { jobId, jobType: JobType.TRAINING, epochs, batchSize: 32 });
}

async function workDir(name: string): Promise<string> {
  const path = join(dir, "work", name);
  await mkdir(path, { recursive: true });
  return path;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-job-process-"));
  datasetPath = join(dir, "blobs.csv");
  await writeFile(datasetPath, dataset(300));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("a job in its own process", () => {
  test("a small training job completes with its artifacts and reports progress", async () => {
    const events: WorkerProgress[] = [];
    const outcome = await runJobInProcess({
      input: {
        spec: trainingSpec("small", 3),
        modelPath: await modelFile("small.json", [8]),
        modelMediaType: "application/vnd.tessera.sequential+json",
        datasetPath,
        datasetMediaType: "text/csv",
      },
      workDir: await workDir("small"),
      maxDurationMs: 60_000,
      maxMemoryBytes: 2048 * MIB,
      onProgress: (event) => events.push(event),
    });
    assert.equal(outcome.kind, "completed", JSON.stringify(outcome));
    assert.ok(outcome.kind === "completed");
    assert.deepEqual(outcome.artifacts.map((a) => a.name).sort(), ["metrics", "model", "weights"]);
    const model = outcome.artifacts.find((a) => a.name === "model");
    assert.equal(model?.mediaType, "application/onnx");
    assert.ok((await readFile(model?.path ?? "")).length > 0);
    assert.equal(typeof outcome.finalMetrics["train/loss"], "number");
    assert.ok(events.some((event) => event.epoch === 3));
    assert.ok(events.some((event) => event.metrics?.["train/loss"] !== undefined));
  });

  test("a job that runs past its time limit is killed: TIME_LIMIT_EXCEEDED", async () => {
    const outcome = await runJobInProcess({
      input: {
        spec: trainingSpec("endless", 10_000),
        modelPath: await modelFile("endless.json", [32, 32]),
        modelMediaType: "application/vnd.tessera.sequential+json",
        datasetPath,
        datasetMediaType: "text/csv",
      },
      workDir: await workDir("endless"),
      maxDurationMs: 3_000,
      maxMemoryBytes: 2048 * MIB,
    });
    assert.deepEqual(pick(outcome), {
      kind: "failed",
      reason: "time_limit_exceeded",
      message: "the job ran longer than its time limit of 3000 ms",
    });
  });

  test("a job that needs more memory than its limit is killed: MEMORY_LIMIT_EXCEEDED", async () => {
    // Two 6000-unit layers: a 36-million-weight matrix (137 MiB), then its gradients and the
    // optimizer's two moments of the same size: far past 300 MiB once training starts.
    const outcome = await runJobInProcess({
      input: {
        spec: trainingSpec("huge", 5),
        modelPath: await modelFile("huge.json", [6000, 6000]),
        modelMediaType: "application/vnd.tessera.sequential+json",
        datasetPath,
        datasetMediaType: "text/csv",
      },
      workDir: await workDir("huge"),
      maxDurationMs: 120_000,
      maxMemoryBytes: 300 * MIB,
    });
    assert.equal(outcome.kind, "failed", JSON.stringify(outcome));
    assert.ok(outcome.kind === "failed");
    assert.equal(outcome.reason, "memory_limit_exceeded");
    assert.match(outcome.message, /over its memory limit of 300 MiB/);
  });

  test("an unusable model document fails as INVALID_INPUT, naming the field", async () => {
    const path = join(dir, "bad.json");
    await writeFile(
      path,
      JSON.stringify({ format: "tessera.sequential/v1", layers: [], loss: "mse" }),
    );
    const outcome = await runJobInProcess({
      input: {
        spec: trainingSpec("bad", 1),
        modelPath: path,
        modelMediaType: "application/vnd.tessera.sequential+json",
        datasetPath,
        datasetMediaType: "text/csv",
      },
      workDir: await workDir("bad"),
      maxDurationMs: 60_000,
      maxMemoryBytes: 2048 * MIB,
    });
    assert.equal(outcome.kind, "failed");
    assert.ok(outcome.kind === "failed");
    assert.equal(outcome.reason, "invalid_input");
    assert.match(outcome.message, /model\.layers/);
  });

  test("cancelling stops the job's process", async () => {
    const cancel = new AbortController();
    const outcome = await runJobInProcess({
      input: {
        spec: trainingSpec("cancelled", 10_000),
        modelPath: await modelFile("cancelled.json", [16]),
        modelMediaType: "application/vnd.tessera.sequential+json",
        datasetPath,
        datasetMediaType: "text/csv",
      },
      workDir: await workDir("cancelled"),
      maxDurationMs: 120_000,
      maxMemoryBytes: 2048 * MIB,
      // Cancel once the job has really started training.
      onProgress: (event) => {
        if ((event.epoch ?? 0) >= 2) cancel.abort();
      },
      signal: cancel.signal,
    });
    assert.equal(outcome.kind, "cancelled");
  });
});

function pick(outcome: JobProcessOutcome) {
  if (outcome.kind !== "failed") return { kind: outcome.kind };
  return { kind: outcome.kind, reason: outcome.reason, message: outcome.message };
}
