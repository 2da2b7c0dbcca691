/**
 * The node agent against an in-memory job server (NodeService and JobStatusService through
 * createRouterTransport) that records what the node sends. The job's process is replaced by a
 * scripted one, so these tests exercise the protocol: registration, heartbeats, the assignment
 * stream, acceptance, progress, the signed result, cancellation, capacity and shutdown.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { generateKeyPair } from "@tessera/identity/keys";
import { findNodeRecordProblem } from "@tessera/identity/node-record";
import { resultHash } from "@tessera/identity/result-manifest";
import { verifyComputeCompletion } from "@tessera/identity/validation-bundle";
import {
  ContentRefSchema,
  DeviceType,
  type NodeRecord,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type Assignment,
  AssignmentSchema,
  JobCancellationSchema,
  JobFailureReason,
  type JobSpecSchema,
  JobState,
  JobType,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  JobStatusService,
  type ReportJobResultRequest,
  type UpdateJobStatusRequest,
} from "@tessera/proto/tessera/job/v1/job_status_service_pb.js";
import {
  type HeartbeatRequest,
  LeaseOutcome,
  NodeService,
  type NotifyJobAcceptedRequest,
  type ReceiveAssignmentsResponse,
  ReceiveAssignmentsResponseSchema,
  type ReportCompletionRequest,
  type ReportProgressRequest,
} from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import { createLogger } from "@tessera/runtime";
import { sealComputeNodeRecord } from "../hardware/node-record.js";
import type { JobProcessOptions, JobProcessOutcome } from "../runner/job-process.js";
import type { Capacity } from "./capacity.js";
import { JobRun } from "./job-run.js";
import { NodeAgent } from "./node-agent.js";

const logger = createLogger({ service: "test", level: "silent" });
const keyPair = generateKeyPair();
let record: NodeRecord;
let workRoot: string;

before(async () => {
  workRoot = await mkdtemp(join(tmpdir(), "tessera-agent-"));
  record = await sealComputeNodeRecord({
    hardware: {
      cpuModel: "test CPU",
      cpuCores: 4,
      ramTotalBytes: 8n << 30n,
      ramAvailableBytes: 4n << 30n,
      gpus: [],
    },
    offer: {
      name: "test",
      publicUrl: "",
      region: "",
      maxConcurrentJobs: 2,
      maxModelSizeBytes: 1n << 30n,
      pricePerHour: 0n,
      payoutAddress: "",
      runtimes: ["tfjs"],
      supportedFormats: ["csv"],
      capabilities: ["training"],
    },
    keyPair,
    powDifficulty: 4,
  });
});
after(async () => {
  await rm(workRoot, { recursive: true, force: true });
});

/** Resolves once `predicate` holds (checked every few ms); fails the test after 10 s. */
async function until<T>(predicate: () => T | undefined | false, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = predicate();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** An in-memory job server that records every call and lets the test push stream events. */
function fakeJobServer(
  options: { heartbeatMs?: number; reregisterOnce?: boolean; endFirstStream?: boolean } = {},
) {
  const calls = {
    registered: [] as NodeRecord[],
    heartbeats: [] as HeartbeatRequest[],
    streamsOpened: 0,
    accepted: [] as NotifyJobAcceptedRequest[],
    statuses: [] as UpdateJobStatusRequest[],
    progress: [] as ReportProgressRequest[],
    results: [] as ReportJobResultRequest[],
    completions: [] as ReportCompletionRequest[],
  };
  let pending: ReceiveAssignmentsResponse[] = [];
  let wake: (() => void) | undefined;
  let reregister = options.reregisterOnce === true;
  const push = (event: ReceiveAssignmentsResponse["event"]) => {
    pending.push(create(ReceiveAssignmentsResponseSchema, { event }));
    wake?.();
  };
  const transport = createRouterTransport((router) => {
    router.service(NodeService, {
      registerNode(request) {
        if (request.record === undefined) throw new ConnectError("no record", Code.InvalidArgument);
        calls.registered.push(request.record);
        return {
          nodeAddress: request.record.address,
          heartbeatIntervalMs: BigInt(options.heartbeatMs ?? 20),
          leaseDurationMs: 30_000n,
        };
      },
      heartbeat(request) {
        calls.heartbeats.push(request);
        const reregisterRequired = reregister;
        reregister = false;
        return { reregisterRequired, nextHeartbeatIntervalMs: BigInt(options.heartbeatMs ?? 20) };
      },
      async *receiveAssignments(_request, ctx) {
        calls.streamsOpened++;
        const first = calls.streamsOpened === 1;
        yield {
          event: { case: "keepalive", value: { intervalMs: 1000n, serverTime: timestampNow() } },
        };
        // Like a server whose deadline ends the stream: the node must open a new one.
        if (first && options.endFirstStream === true) return;
        while (!ctx.signal.aborted) {
          const batch = pending;
          pending = [];
          for (const event of batch) yield event;
          await new Promise<void>((resolve) => {
            wake = resolve;
            ctx.signal.addEventListener("abort", () => resolve(), { once: true });
          });
        }
      },
      notifyJobAccepted(request) {
        calls.accepted.push(request);
        return {};
      },
      reportProgress(request) {
        calls.progress.push(request);
        return { shouldContinue: true };
      },
      reportCompletion(request) {
        calls.completions.push(request);
        return {};
      },
    });
    router.service(JobStatusService, {
      updateJobStatus(request) {
        calls.statuses.push(request);
        return { shouldContinue: true };
      },
      reportJobResult(request) {
        calls.results.push(request);
        return {};
      },
    });
  });
  return {
    calls,
    push,
    node: createClient(NodeService, transport),
    status: createClient(JobStatusService, transport),
  };
}

function assignment(
  jobId: string,
  spec: Omit<MessageInitShape<typeof JobSpecSchema>, "$typeName"> = {},
): Assignment {
  return create(AssignmentSchema, {
    jobId,
    leaseId: `lease-${jobId}`,
    attempt: 1,
    leaseDurationMs: 30_000n,
    spec: { jobId, jobType: JobType.TRAINING, epochs: 1, ...spec },
  });
}

const capacity: Capacity = {
  maxConcurrentJobs: 2,
  memoryBudgetBytes: 4 << 30,
  defaultJobDurationMs: 60_000,
  runtimes: ["tfjs"],
  deviceTypes: [DeviceType.CPU],
};

/** Starts an agent whose job processes are scripted by `runProcess`. */
function startAgent(
  server: ReturnType<typeof fakeJobServer>,
  runProcess: (options: JobProcessOptions) => Promise<JobProcessOutcome>,
  overrides: Partial<Capacity> = {},
) {
  const uploads: string[] = [];
  const agent = new NodeAgent({
    keyPair,
    record,
    node: server.node,
    capacity: { ...capacity, ...overrides },
    measure: () => ({ machineFreeBytes: 4 << 30, devices: [], cpuUtilization: 0.1 }),
    logger,
    shutdownGraceMs: 5_000,
    createRun: (lease, limits) =>
      new JobRun(lease, limits, {
        keyPair,
        node: server.node,
        status: server.status,
        resolveInputs: async (a) => ({ spec: a.spec ?? assert.fail("no spec") }),
        isInputError: () => false,
        runProcess,
        uploadArtifact: async (file) => {
          uploads.push(file.name);
          const bytes = await readFile(file.path);
          return create(ContentRefSchema, {
            digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
            sizeBytes: BigInt(bytes.length),
            uri: `artifact://${file.name}-1`,
            mediaType: file.mediaType,
          });
        },
        workRoot,
        logger,
        progressIntervalMs: 0,
      }),
  });
  agent.start();
  return { agent, uploads };
}

/** A job process that reports one epoch and writes a model file. */
async function trainingProcess(options: JobProcessOptions): Promise<JobProcessOutcome> {
  options.onProgress?.({
    progress: 0.5,
    epoch: 1,
    metrics: { "train/loss": 0.7 },
    log: { level: "info", message: "epoch 1 done" },
  });
  const path = join(options.workDir, "model.onnx");
  await writeFile(path, "trained model bytes");
  return {
    kind: "completed",
    artifacts: [{ name: "model", path, mediaType: "application/onnx" }],
    finalMetrics: { "train/loss": 0.5 },
    elapsedMs: 42,
  };
}

/** A job process that runs until it is cancelled. */
function endlessProcess(started: string[]) {
  return (options: JobProcessOptions): Promise<JobProcessOutcome> => {
    started.push(options.input.spec.jobId);
    return new Promise((resolve) => {
      options.signal?.addEventListener("abort", () => resolve({ kind: "cancelled", elapsedMs: 1 }));
    });
  };
}

describe("node agent", () => {
  test("registers its sealed record, runs an assignment and hands in a signed result", async () => {
    const server = fakeJobServer();
    const { agent, uploads } = startAgent(server, trainingProcess);
    try {
      await until(() => server.calls.registered.length > 0, "registration");
      assert.equal(findNodeRecordProblem(server.calls.registered[0] as NodeRecord), undefined);
      await until(() => server.calls.streamsOpened > 0, "the assignment stream");

      server.push({ case: "assignment", value: assignment("job-1") });
      const closed = await until(() => server.calls.completions[0], "the lease to close");

      assert.equal(server.calls.accepted[0]?.accepted, true);
      assert.equal(server.calls.statuses[0]?.state, JobState.RUNNING);
      const progress = server.calls.progress[0];
      assert.equal(progress?.currentEpoch, 1);
      assert.equal(progress?.metrics["train/loss"], 0.7);
      assert.equal(progress?.logs[0]?.message, "epoch 1 done");
      assert.deepEqual(uploads, ["model"]);

      const result = server.calls.results[0]?.result;
      assert.equal(result?.state, JobState.COMPLETED);
      assert.equal(result?.artifacts[0]?.name, "model");
      assert.equal(result?.finalMetrics["train/loss"], 0.5);
      const completion = result?.computeCompletion;
      assert.ok(completion !== undefined && verifyComputeCompletion(completion));
      assert.equal(completion.requestId, "job-1");
      assert.equal(completion.computeNodeAddress, keyPair.address);
      const digest = `sha256:${createHash("sha256").update("trained model bytes").digest("hex")}`;
      assert.deepEqual(completion.resultHash, resultHash([{ name: "model", digest }]));

      assert.equal(closed.outcome, LeaseOutcome.RESULT_REPORTED);
      assert.equal(closed.leaseId, "lease-job-1");
      // The freed slot is announced with a heartbeat listing no active lease.
      await until(
        () =>
          server.calls.heartbeats.some(
            (h) => h.load?.freeSlots === 2 && h.activeLeaseIds.length === 0,
          ),
        "a heartbeat with both slots free",
      );
    } finally {
      await agent.close();
    }
  });

  test("a failed run is reported FAILED with its reason", async () => {
    const server = fakeJobServer();
    const { agent } = startAgent(server, async () => ({
      kind: "failed",
      reason: "time_limit_exceeded",
      message: "the job ran longer than its time limit of 100 ms",
      elapsedMs: 100,
    }));
    try {
      await until(() => server.calls.streamsOpened > 0, "the assignment stream");
      server.push({ case: "assignment", value: assignment("slow-job") });
      const closed = await until(() => server.calls.completions[0], "the lease to close");
      const result = server.calls.results[0]?.result;
      assert.equal(result?.state, JobState.FAILED);
      assert.equal(result?.failureReason, JobFailureReason.TIME_LIMIT_EXCEEDED);
      assert.match(result?.errorMessage ?? "", /time limit/);
      assert.equal(closed.outcome, LeaseOutcome.RESULT_REPORTED);
    } finally {
      await agent.close();
    }
  });

  test("a cancellation stops the running job and closes the lease as CANCELLED", async () => {
    const server = fakeJobServer();
    const started: string[] = [];
    const { agent } = startAgent(server, endlessProcess(started));
    try {
      await until(() => server.calls.streamsOpened > 0, "the assignment stream");
      server.push({ case: "assignment", value: assignment("doomed") });
      await until(() => started.includes("doomed"), "the job to start");
      server.push({
        case: "cancellation",
        value: create(JobCancellationSchema, {
          jobId: "doomed",
          leaseId: "lease-doomed",
          reason: "cancelled by client",
        }),
      });
      const closed = await until(() => server.calls.completions[0], "the lease to close");
      assert.equal(closed.outcome, LeaseOutcome.CANCELLED);
      assert.equal(closed.reason, "cancelled by client");
      assert.equal(server.calls.results.length, 0);
    } finally {
      await agent.close();
    }
  });

  test("refuses work beyond its slots, and jobs it cannot run", async () => {
    const server = fakeJobServer();
    const started: string[] = [];
    const { agent } = startAgent(server, endlessProcess(started), { maxConcurrentJobs: 1 });
    try {
      await until(() => server.calls.streamsOpened > 0, "the assignment stream");
      server.push({ case: "assignment", value: assignment("first") });
      await until(() => started.includes("first"), "the first job to start");
      server.push({ case: "assignment", value: assignment("second") });
      const refused = await until(
        () => server.calls.accepted.find((a) => a.jobId === "second"),
        "the second assignment's answer",
      );
      assert.equal(refused.accepted, false);
      assert.match(refused.rejectReason, /no free slot/);
      const load = await until(
        () => server.calls.heartbeats.find((h) => h.activeLeaseIds.includes("lease-first")),
        "a heartbeat naming the running lease",
      );
      assert.equal(load.load?.freeSlots, 0);
      assert.deepEqual(load.load?.activeJobIds, ["first"]);
    } finally {
      await agent.close();
    }
    const server2 = fakeJobServer();
    const { agent: agent2 } = startAgent(server2, trainingProcess);
    try {
      await until(() => server2.calls.streamsOpened > 0, "the assignment stream");
      server2.push({
        case: "assignment",
        value: assignment("gpu-job", { requiredDevice: DeviceType.CUDA }),
      });
      server2.push({
        case: "assignment",
        value: assignment("huge-job", { maxMemoryBytes: 64n << 30n }),
      });
      server2.push({
        case: "assignment",
        value: assignment("onnx-job", { requiredRuntime: "onnxruntime" }),
      });
      await until(() => server2.calls.accepted.length === 3, "three answers");
      const reasons = Object.fromEntries(server2.calls.accepted.map((a) => [a.jobId, a]));
      assert.match(reasons["gpu-job"]?.rejectReason ?? "", /device CUDA is not available/);
      assert.match(reasons["huge-job"]?.rejectReason ?? "", /memory limit/);
      assert.match(reasons["onnx-job"]?.rejectReason ?? "", /runtime "onnxruntime" is not offered/);
      assert.ok(server2.calls.accepted.every((a) => !a.accepted));
    } finally {
      await agent2.close();
    }
  });

  test("registers again when a heartbeat says the server forgot the node", async () => {
    const server = fakeJobServer({ reregisterOnce: true });
    const { agent } = startAgent(server, trainingProcess);
    try {
      await until(() => server.calls.registered.length >= 2, "a second registration");
      // Work still flows after the new session.
      server.push({ case: "assignment", value: assignment("after-reregister") });
      const closed = await until(() => server.calls.completions[0], "the lease to close");
      assert.equal(closed.outcome, LeaseOutcome.RESULT_REPORTED);
    } finally {
      await agent.close();
    }
  });

  test("reopens the assignment stream when the server ends it", async () => {
    const server = fakeJobServer({ endFirstStream: true });
    const { agent } = startAgent(server, trainingProcess);
    try {
      await until(() => server.calls.streamsOpened >= 2, "a second stream");
      server.push({ case: "assignment", value: assignment("on-second-stream") });
      const closed = await until(() => server.calls.completions[0], "the lease to close");
      assert.equal(closed.jobId, "on-second-stream");
      assert.equal(server.calls.registered.length, 1);
    } finally {
      await agent.close();
    }
  });

  test("shutdown gives running jobs back as RELEASED and takes no more work", async () => {
    const server = fakeJobServer();
    const started: string[] = [];
    const { agent } = startAgent(server, endlessProcess(started));
    await until(() => server.calls.streamsOpened > 0, "the assignment stream");
    server.push({ case: "assignment", value: assignment("long-job") });
    await until(() => started.includes("long-job"), "the job to start");
    await agent.close();
    const closed = server.calls.completions[0];
    assert.equal(closed?.outcome, LeaseOutcome.RELEASED);
    assert.match(closed?.reason ?? "", /shutting down/);
    assert.equal(agent.state, "stopped");
    assert.equal(agent.load().freeSlots, 0);
  });
});
