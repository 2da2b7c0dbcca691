/**
 * End to end: the real job server (its built binary, as its own process) and a real compute node
 * (in this process). A client uploads a dataset and a model document, submits a free training
 * job through a signed JobService client, and gets back a trained ONNX "model" artifact computed
 * by the node, with the node's signed completion.
 */
import assert from "node:assert/strict";
import { access, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { generateKeyPair } from "@tessera/identity/keys";
import { resultHash } from "@tessera/identity/result-manifest";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { verifyComputeCompletion } from "@tessera/identity/validation-bundle";
import type { Artifact } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import {
  JobFailureReason,
  type JobSpecSchema,
  JobState,
  JobType,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import { createLogger, parseConfig } from "@tessera/runtime";
import { downloadArtifact, uploadArtifact } from "@tessera/sdk/artifacts";
import { type JobServerClient, openJobServerClient } from "@tessera/sdk/job-server-client";
import { waitForJob } from "@tessera/sdk/job-watch";
import { SDK_PROTOCOL_VERSION } from "@tessera/sdk/protocol-version";
import { type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";
import { computeNodeConfigSpec } from "./config.js";
import { type ComputeNode, startComputeNode } from "./server.js";

const jobServerEntry = fileURLToPath(new URL("../../job-server/dist/main.js", import.meta.url));
const logger = createLogger({ service: "compute-node", level: "silent" });

let dir: string;
let jobServer: SpawnedService;
let jobServerAddress: string;
let node: ComputeNode;
let client: JobServerClient;
let datasetArtifact: Artifact;
let modelArtifact: Artifact;

/** A three-class dataset of two features. */
function dataset(rows: number): string {
  const lines = ["x1,x2,label"];
  for (let i = 0; i < rows; i++) {
    const label = i % 3;
    lines.push(
      `${(label * 2 + ((i * 37) % 100) / 100).toFixed(3)},${(-label + ((i * 53) % 100) / 100).toFixed(3)},${label}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

const MODEL = JSON.stringify({
  format: "tessera.sequential/v1",
  layers: [
    { type: "dense", units: 8, activation: "relu" },
    { type: "dense", units: 3, activation: "softmax" },
  ],
  loss: "sparse_categorical_crossentropy",
  optimizer: { name: "adam", learning_rate: 0.05 },
});

before(async () => {
  // Another service's build output: turbo builds only this package's dependencies before its tests.
  await access(jobServerEntry).catch(() => {
    throw new Error(
      `${jobServerEntry} is missing: run \`pnpm --filter @tessera/job-server build\` first`,
    );
  });
  dir = await mkdtemp(join(tmpdir(), "tessera-e2e-"));
  const jobServerDir = join(dir, "job-server");
  // The job server's key is made where it loads it from, so the node knows whom to sign for.
  const { keyPair } = await loadOrCreateServiceKey({
    path: join(jobServerDir, "key.json"),
    name: "job-server",
  });
  jobServerAddress = keyPair.address;
  jobServer = await spawnService({
    entry: jobServerEntry,
    env: { HOST: "127.0.0.1", DATA_DIR: jobServerDir, POW_DIFFICULTY: "8" },
  });
  node = await startComputeNode(
    parseConfig(computeNodeConfigSpec, {
      HOST: "127.0.0.1",
      PORT: "0",
      DATA_DIR: join(dir, "node"),
      JOB_SERVER_URL: jobServer.url,
      JOB_SERVER_ADDRESS: jobServerAddress,
      POW_DIFFICULTY: "8",
      NVIDIA_SMI: "none",
      SHUTDOWN_GRACE_MS: "5000",
    }),
    logger,
    { progressIntervalMs: 200 },
  );
  client = openJobServerClient({
    baseUrl: jobServer.url,
    address: jobServerAddress,
    keyPair: generateKeyPair(),
  });
  datasetArtifact = await uploadArtifact(
    client.artifacts,
    { bytes: new TextEncoder().encode(dataset(240)) },
    { name: "blobs.csv", mediaType: "text/csv" },
  );
  modelArtifact = await uploadArtifact(
    client.artifacts,
    { bytes: new TextEncoder().encode(MODEL) },
    { name: "classifier.json", mediaType: "application/vnd.tessera.sequential+json" },
  );
});

after(async () => {
  client?.close();
  await node?.close();
  await jobServer?.stop();
  await rm(dir, { recursive: true, force: true });
});

let jobCount = 0;

/** Submits a free training job on the uploaded dataset and model; returns its id. */
async function submitTraining(
  spec: Omit<MessageInitShape<typeof JobSpecSchema>, "$typeName">,
): Promise<string> {
  jobCount++;
  const jobId = `e2e-${process.pid}-${jobCount}`;
  await client.jobs.submitJob({
    protocolVersion: SDK_PROTOCOL_VERSION,
    spec: {
      protocolVersion: SDK_PROTOCOL_VERSION,
      jobId,
      jobType: JobType.TRAINING,
      model: { content: modelArtifact.content },
      dataset: datasetArtifact.content,
      batchSize: 16,
      hyperparameters: { seed: "7" },
      maxMemoryBytes: BigInt(2 * 1024 ** 3),
      ...spec,
    },
  });
  return jobId;
}

/** Waits for the job to end (streams kept short, so a missed update costs seconds at most). */
function finished(jobId: string) {
  return waitForJob(client.jobs, jobId, {
    signal: AbortSignal.timeout(90_000),
    streamTimeoutMs: 10_000,
  });
}

/** Resolves once the job reaches `state`. */
async function reaches(jobId: string, state: JobState): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { status } = await client.jobs.getJobStatus({
      protocolVersion: SDK_PROTOCOL_VERSION,
      jobId,
    });
    if (status?.state === state) return;
    if (Date.now() > deadline) assert.fail(`job ${jobId} never reached ${JobState[state]}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test("a free training job submitted to the job server runs on the node and returns a model", async () => {
  const jobId = await submitTraining({ epochs: 5, maxDurationMs: 120_000n });
  const { status, result } = await finished(jobId);
  assert.equal(
    status.state,
    JobState.COMPLETED,
    `${JobState[status.state]}: ${status.errorMessage}`,
  );
  assert.ok(result !== undefined);
  assert.equal(result.nodeAddress, node.address);
  assert.equal(typeof result.finalMetrics["train/loss"], "number");

  const model = result.artifacts.find((artifact) => artifact.name === "model");
  assert.equal(model?.content?.mediaType, "application/onnx");
  const completion = result.computeCompletion;
  assert.ok(completion !== undefined && verifyComputeCompletion(completion));
  assert.equal(completion.computeNodeAddress, node.address);
  const manifest = result.artifacts.map((a) => ({ name: a.name, digest: a.content?.digest ?? "" }));
  assert.ok(Buffer.from(completion.resultHash).equals(resultHash(manifest)));

  // The client can fetch the trained model: an ONNX file of the size the result names.
  const artifactId = (model?.content?.uri ?? "").replace("artifact://", "");
  const destPath = join(dir, "model.onnx");
  await downloadArtifact(client.artifacts, artifactId, destPath);
  const bytes = await readFile(destPath);
  assert.equal(BigInt(bytes.length), model?.content?.sizeBytes);
  assert.ok(bytes.length > 100);
});

test("a job that outruns its max_duration_ms fails with TIME_LIMIT_EXCEEDED", async () => {
  const jobId = await submitTraining({ epochs: 10_000, maxDurationMs: 2_500n, maxAttempts: 1 });
  const { status } = await finished(jobId);
  assert.equal(status.state, JobState.FAILED);
  assert.equal(status.failureReason, JobFailureReason.TIME_LIMIT_EXCEEDED, status.errorMessage);
});

test("cancelling a running job stops it on the node and frees the slot", async () => {
  const jobId = await submitTraining({ epochs: 10_000, maxDurationMs: 120_000n });
  await reaches(jobId, JobState.RUNNING);
  await client.jobs.cancelJob({
    protocolVersion: SDK_PROTOCOL_VERSION,
    jobId,
    reason: "changed my mind",
  });
  const { status } = await finished(jobId);
  assert.equal(status.state, JobState.CANCELLED);
  const agent = node.agent;
  assert.ok(agent !== undefined);
  const deadline = Date.now() + 30_000;
  while (agent.activeLeaseIds.length > 0) {
    if (Date.now() > deadline) assert.fail("the node still works on the cancelled job");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(agent.load().freeSlots, 2);
});

test("a node shutting down gives its running job back: the job is queued again at once", async () => {
  const jobId = await submitTraining({ epochs: 10_000, maxDurationMs: 120_000n });
  await reaches(jobId, JobState.RUNNING);
  await node.close();
  const { status } = await client.jobs.getJobStatus({
    protocolVersion: SDK_PROTOCOL_VERSION,
    jobId,
  });
  // Queued for another node long before the lease could have lapsed.
  assert.equal(status?.state, JobState.QUEUED);
  await client.jobs.cancelJob({
    protocolVersion: SDK_PROTOCOL_VERSION,
    jobId,
    reason: "test done",
  });
});
