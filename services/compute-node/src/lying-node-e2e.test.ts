/**
 * A node caught lying is not paid and loses reputation (issue #5), on a network of real processes
 * started from their built binaries (wallet, registry, three staked validators that re-execute a
 * sample of inference rows, job server, one compute node).
 *
 * The real compute node trains a small model (a paid job, as a client would run it), then is
 * killed. A lying node, played by this test over the real protocol with its own key and a sealed
 * record, registers with the registry (heartbeating, so validators approve routes to it) and with
 * the job server (heartbeats, assignment stream). The client submits paid inference jobs; the
 * played node takes each, computes the honest predictions with onnxruntime, uploads them as its
 * "predictions" with a metrics document, signs a correct ComputeCompletion over the manifest of
 * what it uploaded and reports the result. First honestly (the control: approved and paid, so the
 * played node speaks the protocol right), then lying: every third row changed. The test checks
 * what the client, the wallet's ledger and the registry show for the lie: the job FAILED with
 * VALIDATION_REJECTED under the validators' signed rejection, the escrow REFUNDED in full, the
 * liar's payout address paid nothing, its reputation down and a strike.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import { resultHash } from "@tessera/identity/result-manifest";
import { signComputeCompletion } from "@tessera/identity/validation-bundle";
import { sampleRowIndices } from "@tessera/ml/batch-reexecutor";
import { ort } from "@tessera/ml/onnxruntime";
import {
  ComputeCompletionSchema,
  type ContentRef,
  type NodeLoad,
  NodeLoadSchema,
  type NodeRecord,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { ArtifactService } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import {
  type Assignment,
  JobFailureReason,
  type JobSpecSchema,
  JobState,
  JobType,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import { JobStatusService } from "@tessera/proto/tessera/job/v1/job_status_service_pb.js";
import { LeaseOutcome, NodeService } from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import type { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { EscrowState, TransactionKind } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { downloadArtifact, uploadArtifact } from "@tessera/sdk/artifacts";
import { type JobOutcome, waitForJob } from "@tessera/sdk/job-watch";
import { SDK_PROTOCOL_VERSION as V1 } from "@tessera/sdk/protocol-version";
import { sealComputeNodeRecord } from "./hardware/node-record.js";
import { createSignedTransport } from "./peers/signed-transport.js";
import { NODE_PROTOCOL_VERSION } from "./protocol-version.js";
import { blobsCsv, featuresOf, MODEL_DOCUMENT } from "./test-blobs.js";
import { assertServicesBuilt, startTestNetwork, type TestNetwork } from "./test-network.js";

await assertServicesBuilt();

// ---------------------------------------------------------------------------------------------
// Data: three Gaussian blobs in two dimensions, from a seeded generator.

const TRAIN_CSV = blobsCsv(20_240_601, 60);
const PREDICT_CSV = blobsCsv(7_070_707, 20);

// ---------------------------------------------------------------------------------------------
// onnxruntime-node, loaded directly (the copy @tessera/ml runs), for the liar's honest baseline.

// ---------------------------------------------------------------------------------------------
// Helpers.

/** The duration each paid job estimates: the validators price it by that. */
const ESTIMATED_MS = 2_000n;
/** What each paid job escrows: more than its price (2 s at 3,600,000 an hour). */
const ESCROW = 5_000n;
/** Rows the validators re-execute per inference job (the batch re-executor's default). */
const VALIDATOR_SAMPLE_ROWS = 32;
/** The liar changes every row whose index is a multiple of this. */
const TAMPER_EVERY = 3;

/** A value for a failure message. */
function shown(value: unknown): string {
  if (value instanceof Error) return value.message;
  const status = (value as { status?: { state: JobState; errorMessage: string } })?.status;
  if (status !== undefined) return `${JobState[status.state]} "${status.errorMessage}"`;
  try {
    return JSON.stringify(value, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
  } catch {
    return String(value);
  }
}

/** Polls `read` until `check` holds; fails naming `what` after `timeoutMs`. */
async function eventually<T>(
  what: string,
  read: () => Promise<T>,
  check: (value: T) => boolean,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const value = await read().catch((error: unknown) => {
      last = error;
      return undefined;
    });
    if (value !== undefined) {
      if (check(value)) return value;
      last = value;
    }
    if (Date.now() > deadline) {
      assert.fail(`${what}: not reached within ${timeoutMs} ms; last seen: ${shown(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Escrows {@link ESCROW} from the client (arbiter: the job server), then submits the job paid. */
async function submitPaid(
  net: TestNetwork,
  jobId: string,
  spec: Omit<MessageInitShape<typeof JobSpecSchema>, "$typeName" | "jobId">,
): Promise<string> {
  const escrowId = `esc-${jobId}`;
  await net.wallet(net.client).createEscrow({
    protocolVersion: V1,
    escrowId,
    jobId,
    payerAddress: net.client.address,
    amount: ESCROW.toString(),
    arbiterAddress: net.jobServerAddress,
    expiresAt: timestampFromMs(Date.now() + 2 * 3_600_000),
  });
  await net.jobs().jobs.submitJob({
    protocolVersion: V1,
    spec: {
      protocolVersion: V1,
      jobId,
      maxDurationMs: 120_000n,
      paymentAmount: ESCROW.toString(),
      payerAddress: net.client.address,
      escrowId,
      estimatedDurationMs: ESTIMATED_MS,
      expiresAt: timestampFromMs(Date.now() + 3_600_000),
      ...spec,
    },
  });
  return escrowId;
}

/** Waits until the job ends. */
async function finished(net: TestNetwork, jobId: string, timeoutMs = 120_000): Promise<JobOutcome> {
  try {
    return await waitForJob(net.jobs().jobs, jobId, {
      signal: AbortSignal.timeout(timeoutMs),
      streamTimeoutMs: 5_000,
      maxReconnects: 1_000,
      retryDelayMs: 200,
    });
  } catch (error) {
    const now = await net
      .jobs()
      .jobs.getJobStatus({ protocolVersion: V1, jobId })
      .catch((e: unknown) => e);
    assert.fail(`job ${jobId} did not end: ${String(error)}; now: ${shown(now)}`);
  }
}

/** An address's available balance, read by the auditor key. */
async function available(net: TestNetwork, address: string): Promise<bigint> {
  const balance = await net.wallet(net.auditor).getBalance({ protocolVersion: V1, address });
  return BigInt(balance.available);
}

/** The registry's standing of a node. */
async function standingOf(net: TestNetwork, nodeAddress: string) {
  const answer = await net.registry(net.auditor).getNode({ protocolVersion: V1, nodeAddress });
  const standing = answer.node?.standing;
  assert.ok(standing !== undefined, `the registry has no standing for ${nodeAddress}`);
  return standing;
}

// ---------------------------------------------------------------------------------------------
// The lying node.

/** What the played node did with a job it took. */
interface LieReport {
  readonly jobId: string;
  readonly leaseId: string;
  readonly rows: number;
  readonly tamperedRows: readonly number[];
  readonly predictions: ContentRef;
  /** The answer of ReportCompletion (the lease closed as RESULT_REPORTED). */
  readonly leaseClosed: boolean;
}

/** A compute node played by the test: real key, sealed record, real RPCs, wrong predictions. */
interface LyingNode {
  readonly keyPair: KeyPair;
  readonly payoutAddress: string;
  /**
   * Takes the next job assigned to it, answers it (honestly, or with tampered predictions when
   * `tamper`) and resolves once the result is reported and the lease closed; rejects on any
   * protocol error.
   */
  answerNextJob(tamper: boolean): Promise<LieReport>;
  close(): Promise<void>;
}

const GIB = 1024n * 1024n * 1024n;

async function startLyingNode(net: TestNetwork, workDir: string): Promise<LyingNode> {
  const keyPair = generateKeyPair();
  const payoutAddress = generateKeyPair().address;
  const record: NodeRecord = await sealComputeNodeRecord({
    hardware: {
      cpuModel: "lying CPU",
      cpuCores: 4,
      ramTotalBytes: 8n * GIB,
      ramAvailableBytes: 6n * GIB,
      gpus: [],
    },
    offer: {
      name: "liar",
      publicUrl: "",
      region: "",
      maxConcurrentJobs: 1,
      maxModelSizeBytes: GIB,
      pricePerHour: 3_600_000n,
      payoutAddress,
      runtimes: ["onnxruntime", "tfjs", "tessera-data"],
      supportedFormats: ["onnx", "tessera.sequential/v1", "csv", "ndjson"],
      capabilities: ["training", "inference", "evaluation", "preprocessing"],
    },
    keyPair,
    powDifficulty: 4,
  });
  const stop = new AbortController();
  const { signal } = stop;
  const activeLeases = new Set<string>();
  /** The job the node waits for: how to answer it and whom to tell. */
  let waiting:
    | {
        tamper: boolean;
        resolve: (report: LieReport) => void;
        reject: (error: unknown) => void;
      }
    | undefined;

  const load = (): NodeLoad =>
    create(NodeLoadSchema, {
      ramAvailableBytes: 4n * GIB,
      devices: record.devices.map((device) => ({ ...device, availableMemoryBytes: 4n * GIB })),
      activeJobIds: [],
      // A free slot only while the test waits for a job, so nothing else lands here.
      freeSlots: waiting !== undefined && activeLeases.size === 0 ? 1 : 0,
      cpuUtilization: 0.1,
    });

  // The registry: register, then heartbeat at the interval it asks for.
  const registry: Client<typeof RegistryService> = net.registry(keyPair);
  const registered = await registry.registerNode({
    protocolVersion: NODE_PROTOCOL_VERSION,
    record,
  });
  const registryLoop = (async () => {
    let intervalMs = registered.heartbeatIntervalMs || 1_000;
    while (!signal.aborted) {
      await sleep(intervalMs, signal);
      if (signal.aborted) return;
      const answer = await registry
        .updateNodeHeartbeat(
          { protocolVersion: NODE_PROTOCOL_VERSION, nodeAddress: keyPair.address, load: load() },
          { signal, timeoutMs: 5_000 },
        )
        .catch(() => undefined);
      if (answer !== undefined && answer.heartbeatIntervalMs > 0) {
        intervalMs = answer.heartbeatIntervalMs;
      }
    }
  })();

  // The job server: register, heartbeat, keep the assignment stream open.
  const connection = createSignedTransport({
    baseUrl: net.jobServerUrl,
    target: net.jobServerAddress,
    keyPair,
    nonceSource: createNonceSource(),
  });
  const node = createClient(NodeService, connection.transport);
  const status = createClient(JobStatusService, connection.transport);
  const artifacts = createClient(ArtifactService, connection.transport);
  const joined = await node.registerNode({ protocolVersion: NODE_PROTOCOL_VERSION, record });
  const heartbeatLoop = (async () => {
    let intervalMs = Number(joined.heartbeatIntervalMs) || 300;
    while (!signal.aborted) {
      await sleep(intervalMs, signal);
      if (signal.aborted) return;
      const answer = await node
        .heartbeat(
          {
            protocolVersion: NODE_PROTOCOL_VERSION,
            nodeAddress: keyPair.address,
            load: load(),
            activeLeaseIds: [...activeLeases],
          },
          { signal, timeoutMs: 5_000 },
        )
        .catch(() => undefined);
      if (answer === undefined) continue;
      if (answer.nextHeartbeatIntervalMs > 0n) intervalMs = Number(answer.nextHeartbeatIntervalMs);
      if (answer.reregisterRequired) {
        await node
          .registerNode({ protocolVersion: NODE_PROTOCOL_VERSION, record }, { signal })
          .catch(() => undefined);
      }
    }
  })();

  const base = (assignment: Assignment) => ({
    protocolVersion: NODE_PROTOCOL_VERSION,
    nodeAddress: keyPair.address,
    jobId: assignment.jobId,
    leaseId: assignment.leaseId,
  });

  /** Takes the job and answers it with tampered predictions, signed correctly. */
  async function answer(assignment: Assignment, tamper: boolean): Promise<LieReport> {
    const started = Date.now();
    const spec = assignment.spec;
    assert.equal(spec?.jobType, JobType.INFERENCE, "the liar expects an inference job");
    const modelRef = spec.model?.content;
    const datasetRef = spec.dataset;
    assert.ok(modelRef !== undefined && datasetRef !== undefined, "model and dataset");
    await node.notifyJobAccepted({ ...base(assignment), accepted: true });
    await status.updateJobStatus({ ...base(assignment), state: JobState.RUNNING });

    // The honest answer first, from the job's own inputs...
    const modelPath = join(workDir, `${assignment.leaseId}.onnx`);
    const datasetPath = join(workDir, `${assignment.leaseId}.csv`);
    await downloadArtifact(artifacts, modelRef.uri.replace("artifact://", ""), modelPath);
    await downloadArtifact(artifacts, datasetRef.uri.replace("artifact://", ""), datasetPath);
    const { values, rows } = featuresOf(await readFile(datasetPath, "utf8"));
    const session = await ort.InferenceSession.create(await readFile(modelPath));
    const output = (await session.run({ input: new ort.Tensor("float32", values, [rows, 2]) }))
      .output;
    await session.release();
    assert.ok(output !== undefined, "the model has an output named output");
    const honest = output.data as Float32Array;
    const width = honest.length / rows;

    // ...then the lie: every third row's class probabilities rotated (still a distribution,
    // plausible at a glance, but another class wins).
    const tamperedRows: number[] = [];
    const lines: string[] = [];
    for (let row = 0; row < rows; row++) {
      const probabilities = Array.from(honest.subarray(row * width, (row + 1) * width));
      if (tamper && row % TAMPER_EVERY === 0) {
        tamperedRows.push(row);
        probabilities.unshift(probabilities.pop() ?? 0);
      }
      lines.push(JSON.stringify({ output: probabilities }));
    }
    const upload = async (name: string, mediaType: string, text: string) => {
      const artifact = await uploadArtifact(
        artifacts,
        { bytes: new TextEncoder().encode(text) },
        { name, mediaType, jobId: assignment.jobId, leaseId: assignment.leaseId },
      );
      assert.ok(artifact.content !== undefined, `${name} came back without content`);
      return artifact.content;
    };
    const finalMetrics = { "eval/samples": rows };
    const predictions = await upload(
      "predictions",
      "application/x-ndjson",
      `${lines.join("\n")}\n`,
    );
    const metrics = await upload(
      "metrics",
      "application/json",
      `${JSON.stringify({
        job_type: "inference",
        rows,
        batch_size: 256,
        input: { name: "input", type: "float32", features: 2 },
        feature_columns: ["x0", "x1"],
        outputs: [{ name: "output", width }],
        final: finalMetrics,
      })}\n`,
    );
    const resultArtifacts = [
      { name: "predictions", content: predictions },
      { name: "metrics", content: metrics },
    ];
    const computeMs = Date.now() - started;
    // The completion is honest about what was uploaded: its signature and hash are valid.
    const computeCompletion = signComputeCompletion(
      create(ComputeCompletionSchema, {
        protocolVersion: NODE_PROTOCOL_VERSION,
        requestId: assignment.jobId,
        computeNodeAddress: keyPair.address,
        resultHash: resultHash(
          resultArtifacts.map((a) => ({ name: a.name, digest: a.content.digest })),
        ),
        completedAt: timestampNow(),
        computationTimeMs: BigInt(computeMs),
      }),
      keyPair,
    );
    await status.reportJobResult({
      ...base(assignment),
      result: {
        protocolVersion: NODE_PROTOCOL_VERSION,
        jobId: assignment.jobId,
        attempt: assignment.attempt,
        nodeAddress: keyPair.address,
        state: JobState.COMPLETED,
        artifacts: resultArtifacts,
        finalMetrics,
        totalComputeTimeMs: BigInt(computeMs),
        computeCompletion,
      },
    });
    await node.reportCompletion({
      ...base(assignment),
      outcome: LeaseOutcome.RESULT_REPORTED,
      computeTimeMs: BigInt(computeMs),
      reason: "",
    });
    return {
      jobId: assignment.jobId,
      leaseId: assignment.leaseId,
      rows,
      tamperedRows,
      predictions,
      leaseClosed: true,
    };
  }

  const onAssignment = (assignment: Assignment) => {
    const job = waiting;
    if (job === undefined || activeLeases.has(assignment.leaseId)) {
      void node
        .notifyJobAccepted({
          ...base(assignment),
          accepted: false,
          rejectReason: "the node takes one job at a time, when the test asks",
        })
        .catch(() => undefined);
      return;
    }
    waiting = undefined;
    activeLeases.add(assignment.leaseId);
    answer(assignment, job.tamper).then(
      (report) => {
        activeLeases.delete(assignment.leaseId);
        job.resolve(report);
      },
      (error: unknown) => {
        activeLeases.delete(assignment.leaseId);
        job.reject(error);
      },
    );
  };

  const streamLoop = (async () => {
    while (!signal.aborted) {
      try {
        const stream = node.receiveAssignments(
          { protocolVersion: NODE_PROTOCOL_VERSION, nodeAddress: keyPair.address, load: load() },
          { signal, timeoutMs: 20_000 },
        );
        for await (const response of stream) {
          if (response.event.case === "assignment") onAssignment(response.event.value);
        }
      } catch {
        // Deadline or a dropped stream: reopen it.
      }
      await sleep(100, signal);
    }
  })();

  return {
    keyPair,
    payoutAddress,
    answerNextJob(tamper) {
      assert.equal(waiting, undefined, "one job at a time");
      return new Promise<LieReport>((resolve, reject) => {
        waiting = { tamper, resolve, reject };
      });
    },
    async close() {
      stop.abort();
      await Promise.allSettled([registryLoop, heartbeatLoop, streamLoop]);
      connection.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------

describe("a node caught lying on a network of real processes", { timeout: 400_000 }, () => {
  let dir: string | undefined;
  let net: TestNetwork | undefined;
  let liar: LyingNode | undefined;
  let model: ContentRef | undefined;
  let predictDataset: ContentRef | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-lying-node-e2e-"));
    net = await startTestNetwork({ dir, computeNodes: 1 });
    const { artifacts } = net.jobs();
    const upload = async (text: string, name: string, mediaType: string) => {
      const artifact = await uploadArtifact(
        artifacts,
        { bytes: new TextEncoder().encode(text) },
        { name, mediaType },
      );
      assert.ok(artifact.content !== undefined);
      return artifact.content;
    };
    const dataset = await upload(TRAIN_CSV, "blobs-train.csv", "text/csv");
    predictDataset = await upload(PREDICT_CSV, "blobs-predict.csv", "text/csv");
    const modelDocument = await upload(
      MODEL_DOCUMENT,
      "classifier.json",
      "application/vnd.tessera.sequential+json",
    );

    // The honest node trains the model the liar will lie about (a paid job, as test 1 of
    // network-e2e), then leaves the network.
    const trainId = `train-${process.pid}`;
    await submitPaid(net, trainId, {
      jobType: JobType.TRAINING,
      model: { modelId: "blobs-classifier", content: modelDocument },
      dataset,
      epochs: 15,
      batchSize: 32,
      hyperparameters: { seed: "7" },
    });
    const trained = await finished(net, trainId);
    assert.equal(
      trained.status.state,
      JobState.COMPLETED,
      `training: ${JobState[trained.status.state]} "${trained.status.errorMessage}"`,
    );
    model = trained.result?.artifacts.find((a) => a.name === "model")?.content;
    assert.ok(model !== undefined, "the training job produced no model artifact");
    assert.equal(model.mediaType, "application/onnx");

    const honest = net.nodes[0];
    assert.ok(honest !== undefined);
    await net.killNode(honest.address);
    await eventually(
      "the killed honest node listed offline by the registry",
      () => standingOf(net as TestNetwork, honest.address),
      (standing) => !standing.online,
      30_000,
    );

    liar = await startLyingNode(net, dir);
    const liarAddress = liar.keyPair.address;
    await eventually(
      "the lying node listed online by the registry",
      () => standingOf(net as TestNetwork, liarAddress),
      (standing) => standing.online,
      30_000,
    );
  });

  after(async () => {
    await liar?.close();
    await net?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  /** Submits a paid inference job with the trained model; the played node answers it. */
  async function inferenceAnswered(jobId: string, tamper: boolean) {
    assert.ok(net !== undefined && liar !== undefined && model !== undefined);
    assert.ok(predictDataset !== undefined);
    const answered = liar.answerNextJob(tamper);
    const escrowId = await submitPaid(net, jobId, {
      jobType: JobType.INFERENCE,
      model: { modelId: "blobs-classifier", content: model },
      dataset: predictDataset,
      hyperparameters: { feature_columns: "x0,x1" },
      requiredRuntime: "onnxruntime",
    });
    const report = await Promise.race([
      answered,
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`job ${jobId} was never assigned to the played node`)),
          60_000,
        ).unref(),
      ),
    ]);
    assert.equal(report.jobId, jobId, "the played node took this job");
    return { escrowId, report };
  }

  test("control: the same node answering honestly over the same protocol is approved and paid", async (t) => {
    assert.ok(net !== undefined && liar !== undefined);
    const payoutBefore = await available(net, liar.payoutAddress);
    const jobId = `honest-${process.pid}`;
    const { escrowId, report } = await inferenceAnswered(jobId, false);
    assert.equal(report.tamperedRows.length, 0);
    const outcome = await finished(net, jobId);
    assert.equal(
      JobState[outcome.status.state],
      JobState[JobState.COMPLETED],
      `the honest answer must be accepted: "${outcome.status.errorMessage}"`,
    );
    const terms = outcome.result?.completionValidation?.terms;
    assert.equal(terms?.approved, true, "the validators approved the honest result");
    const computeAmount = BigInt(terms.paymentTree?.computeAmount ?? "0");
    assert.ok(computeAmount > 0n, "the node's share is positive");
    assert.equal(terms.paymentTree?.computeAddress, liar.payoutAddress);
    const escrow = await eventually(
      `escrow ${escrowId} released`,
      async () =>
        (await net?.wallet(net.client).getEscrow({ protocolVersion: V1, escrowId }))?.escrow,
      (value) => value?.state === EscrowState.RELEASED,
      30_000,
    );
    assert.equal(escrow?.state, EscrowState.RELEASED);
    assert.equal(
      await available(net, liar.payoutAddress),
      payoutBefore + computeAmount,
      "the honest answer was paid to the node's payout address",
    );
    t.diagnostic(`the honest answer earned ${computeAmount}`);
  });

  test("tampered predictions are rejected: the job fails, the payer is refunded in full, the liar is not paid and loses reputation", async (t) => {
    assert.ok(net !== undefined && liar !== undefined);
    const liarAddress = liar.keyPair.address;
    const payerBefore = await available(net, net.client.address);
    const liarPaidBefore = await available(net, liar.payoutAddress);
    const liarOwnBefore = await available(net, liarAddress);
    const standingBefore = await standingOf(net, liarAddress);

    const jobId = `lie-${process.pid}`;
    const { escrowId, report } = await inferenceAnswered(jobId, true);
    // The lie is one the validators can see: some tampered rows are among the rows they re-run
    // (the sample is drawn from the job id, the same for every validator).
    const sampled = new Set(sampleRowIndices(jobId, report.rows, VALIDATOR_SAMPLE_ROWS));
    const caught = report.tamperedRows.filter((row) => sampled.has(row));
    t.diagnostic(
      `the liar changed ${report.tamperedRows.length} of ${report.rows} rows; ${caught.length} of them are in the validators' sample`,
    );
    assert.ok(caught.length > 0, "no tampered row is in the validators' sample");

    const outcome = await finished(net, jobId);
    const { status } = outcome;
    t.diagnostic(
      `job ended ${JobState[status.state]} (${JobFailureReason[status.failureReason]}): "${status.errorMessage}"`,
    );
    assert.equal(
      JobState[status.state],
      JobState[JobState.FAILED],
      `the lying node's job must fail, it ended ${JobState[status.state]}: "${status.errorMessage}"`,
    );
    assert.equal(
      JobFailureReason[status.failureReason],
      JobFailureReason[JobFailureReason.VALIDATION_REJECTED],
      `failure reason; message "${status.errorMessage}"`,
    );
    // The verdict is the validators' signed rejection of this very completion.
    const verdict = outcome.result?.completionValidation;
    assert.ok(verdict !== undefined, "the failed job carries the validators' verdict");
    assert.equal(verdict.terms?.approved, false, "the validators did not approve");
    assert.equal(verdict.terms?.computeCompletion?.computeNodeAddress, liarAddress);
    assert.equal(outcome.result?.nodeAddress, liarAddress, "the result is the liar's");
    assert.ok(
      verdict.validatorSignatures.length >= 2,
      `a quorum signed the rejection (${verdict.validatorSignatures.length} signatures)`,
    );

    // The escrow is refunded in full, once; the payer has every unit back.
    const escrow = await eventually(
      `escrow ${escrowId} refunded`,
      async () =>
        (await net?.wallet(net.client).getEscrow({ protocolVersion: V1, escrowId }))?.escrow,
      (value) => value?.state === EscrowState.REFUNDED,
      30_000,
    );
    assert.equal(escrow?.refundedAmount, ESCROW.toString(), "refunded amount");
    assert.equal(escrow?.releasedAmount, "0", "released amount");
    assert.equal(
      await available(net, net.client.address),
      payerBefore,
      "the payer's balance is fully restored",
    );
    const history = (address: string, kind: TransactionKind) =>
      net
        ?.wallet(net.auditor)
        .getTransactionHistory({
          protocolVersion: V1,
          address,
          referenceId: escrowId,
          kinds: [kind],
        })
        .then((answer) => answer.transactions);
    assert.equal(
      (await history(net.client.address, TransactionKind.ESCROW_REFUND))?.length,
      1,
      "one refund entry for the payer",
    );

    // The liar got nothing.
    assert.equal(
      await available(net, liar.payoutAddress),
      liarPaidBefore,
      "the lying node's payout address received nothing",
    );
    assert.equal(
      (await history(liar.payoutAddress, TransactionKind.ESCROW_RELEASE))?.length,
      0,
      "no release entry to the liar's payout address",
    );
    assert.equal(
      await available(net, liarAddress),
      liarOwnBefore,
      "the lying node's own address received nothing",
    );

    // And its standing in the registry went down.
    const standingAfter = await eventually(
      "the liar's reputation lowered by the registry",
      () => standingOf(net as TestNetwork, liarAddress),
      (standing) => standing.reputation < standingBefore.reputation,
      30_000,
    );
    t.diagnostic(
      `liar's reputation ${standingBefore.reputation} -> ${standingAfter.reputation}, strikes ${standingBefore.strikes} -> ${standingAfter.strikes}`,
    );
    assert.ok(
      standingAfter.strikes > standingBefore.strikes,
      `a strike against the liar (strikes ${standingBefore.strikes} -> ${standingAfter.strikes})`,
    );
  });
});
