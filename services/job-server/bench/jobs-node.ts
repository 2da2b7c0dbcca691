/**
 * A bench compute node for ./jobs.bench.ts, forked as its own process: a real client of the job
 * server's NodeService, JobStatusService and ArtifactService with its own key, over one signed
 * HTTP/2 connection. It registers a sealed NodeRecord (proof of work at BENCH_POW_DIFFICULTY, the
 * job server's POW_DIFFICULTY), keeps an assignment stream open (reopened when it ends) and
 * heartbeats at the interval the server asks for. For each assignment it plays what a node does
 * for a job that does no work:
 *
 *   NotifyJobAccepted → [UpdateJobStatus RUNNING] → upload the result artifact (uploadArtifact of
 *   @tessera/sdk: BeginUpload, UploadChunks, CommitUpload) → sign the ComputeCompletion over the
 *   result manifest → ReportJobResult (COMPLETED) → [ReportCompletion RESULT_REPORTED]
 *
 * The bracketed steps run with BENCH_NODE_STEPS=full (what services/compute-node also sends);
 * the default "brief" leaves them out. The result is one small "predictions" file naming the job
 * (unique content, so the job server's per-caller dedupe does not answer an earlier artifact).
 *
 * Calls refused with "replayed or stale nonce" are sent again at once (a refusal has no side effect;
 * services/compute-node resends them after a 250 ms back-off): the job server records a caller's
 * nonces in the order its calls reach the verifying interceptor, and a client-streaming call
 * (UploadChunks) reaches it as soon as its headers arrive, while a unary call first waits for its
 * body, so a node's concurrent calls can overtake each other there. The resends are counted by
 * call and reported to the parent.
 *
 * Timing: `startMs` when the Assignment is read off the stream, `doneMs` when ReportJobResult
 * (or, with "full", ReportCompletion) has answered with the job COMPLETED (see ./jobs-common.ts).
 *
 * Env: JOB_SERVER_URL, JOB_SERVER_ADDRESS, BENCH_POW_DIFFICULTY, BENCH_SLOTS, BENCH_NODE_STEPS.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import { generateKeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import { createNonceSource } from "@tessera/identity/nonce";
import { resultHash } from "@tessera/identity/result-manifest";
import { signComputeCompletion } from "@tessera/identity/validation-bundle";
import {
  ComputeCompletionSchema,
  NodeRecordSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { ArtifactService } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { type Assignment, JobState } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { JobStatusService } from "@tessera/proto/tessera/job/v1/job_status_service_pb.js";
import { LeaseOutcome, NodeService } from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import { uploadArtifact } from "@tessera/sdk/artifacts";
import { PROTOCOL_VERSION } from "../src/protocol-version.js";
import { nowMs, serveParent, tellParent } from "./jobs-common.js";

const url = process.env.JOB_SERVER_URL ?? "";
const serverAddress = process.env.JOB_SERVER_ADDRESS ?? "";
const difficulty = Number(process.env.BENCH_POW_DIFFICULTY ?? 8);
const slots = Number(process.env.BENCH_SLOTS ?? 64);
const full = process.env.BENCH_NODE_STEPS === "full";
const RAM = 16n << 30n;

const keyPair = generateKeyPair();
const nodeAddress = keyPair.address;
const session = new Http2SessionManager(url);
const transport = createConnectTransport({
  baseUrl: url,
  httpVersion: "2",
  sessionManager: session,
  interceptors: [
    createSigningInterceptor({ keyPair, target: serverAddress, nonceSource: createNonceSource() }),
  ],
});
const nodes = createClient(NodeService, transport);
const status = createClient(JobStatusService, transport);
const artifacts = createClient(ArtifactService, transport);
const stopping = new AbortController();
/** Leases of the jobs in hand: job id → lease id. */
const active = new Map<string, string>();
const encoder = new TextEncoder();

let resent: Record<string, number> = {};
const parent = serveParent(
  async () => {
    stopping.abort();
    session.abort();
  },
  () => {
    const taken = resent;
    resent = {};
    return taken;
  },
);

/** Most sends of one call (a call can be overtaken again and again while uploads stream). */
const MAX_SENDS = 1000;

/** Runs `send`, sending it again while the server refuses it for its nonce. */
async function call<T>(name: string, send: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (error) {
      const { code, rawMessage } = ConnectError.from(error);
      if (attempt >= MAX_SENDS || code !== Code.Unauthenticated || !/nonce/.test(rawMessage)) {
        throw error;
      }
      resent[name] = (resent[name] ?? 0) + 1;
      const most = `${name} (most for one call)`;
      resent[most] = Math.max(resent[most] ?? 0, attempt);
    }
  }
}

function load() {
  return {
    freeSlots: Math.max(0, slots - active.size),
    activeJobIds: [...active.keys()],
    ramAvailableBytes: RAM,
  };
}

/** The protocol of one no-op job; see the module comment. */
async function run(assignment: Assignment, startMs: number): Promise<void> {
  const { jobId, leaseId } = assignment;
  const base = { protocolVersion: PROTOCOL_VERSION, nodeAddress, jobId, leaseId };
  active.set(jobId, leaseId);
  try {
    await call("NotifyJobAccepted", () => nodes.notifyJobAccepted({ ...base, accepted: true }));
    if (full) {
      await call("UpdateJobStatus", () =>
        status.updateJobStatus({ ...base, state: JobState.RUNNING }),
      );
    }
    const bytes = encoder.encode(`${JSON.stringify({ y: [0.1, 0.9], job: jobId })}\n`);
    const artifact = await call("uploadArtifact", () =>
      uploadArtifact(artifacts, {
        bytes,
        name: "predictions",
        mediaType: "application/x-ndjson",
        jobId,
        leaseId,
      }),
    );
    if (artifact.content === undefined) throw new Error("the artifact came back without content");
    const results = [{ name: "predictions", content: artifact.content }];
    const computeMs = BigInt(Math.max(0, Math.round(nowMs() - startMs)));
    const computeCompletion = signComputeCompletion(
      create(ComputeCompletionSchema, {
        protocolVersion: PROTOCOL_VERSION,
        requestId: jobId,
        computeNodeAddress: nodeAddress,
        resultHash: resultHash(results.map((r) => ({ name: r.name, digest: r.content.digest }))),
        completedAt: timestampFromMs(Date.now()),
        computationTimeMs: computeMs,
      }),
      keyPair,
    );
    const answer = await call("ReportJobResult", () =>
      status.reportJobResult({
        ...base,
        result: {
          protocolVersion: PROTOCOL_VERSION,
          jobId,
          state: JobState.COMPLETED,
          artifacts: results,
          totalComputeTimeMs: computeMs,
          computeCompletion,
          attempt: assignment.attempt,
          nodeAddress,
        },
      }),
    );
    if (answer.status?.state !== JobState.COMPLETED) {
      throw new Error(`ReportJobResult answered ${JobState[answer.status?.state ?? 0]}`);
    }
    if (full) {
      await call("ReportCompletion", () =>
        nodes.reportCompletion({
          ...base,
          outcome: LeaseOutcome.RESULT_REPORTED,
          computeTimeMs: computeMs,
          reason: "",
        }),
      );
    }
    parent.done([jobId, startMs, nowMs()]);
  } catch (error) {
    if (!stopping.signal.aborted) tellParent({ type: "failed", id: jobId, message: String(error) });
  } finally {
    active.delete(jobId);
  }
}

/** Keeps an assignment stream open until stopped; tells the parent once the first one is up. */
async function receive(): Promise<void> {
  let ready = false;
  while (!stopping.signal.aborted) {
    try {
      const stream = nodes.receiveAssignments(
        { protocolVersion: PROTOCOL_VERSION, nodeAddress, load: load() },
        { signal: stopping.signal, timeoutMs: 300_000 },
      );
      for await (const message of stream) {
        const event = message.event;
        if (event.case === "assignment") {
          void run(event.value, nowMs());
        } else if (event.case === "keepalive" && !ready) {
          ready = true;
          tellParent({ type: "ready", name: nodeAddress });
        }
      }
    } catch (error) {
      if (stopping.signal.aborted) return;
      tellParent({ type: "failed", id: "", message: `assignment stream: ${String(error)}` });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

const record = await sealNodeRecord(
  create(NodeRecordSchema, {
    protocolVersion: PROTOCOL_VERSION,
    nodeType: NodeType.COMPUTE,
    name: `bench-node-${nodeAddress.slice(-6)}`,
    softwareVersion: "bench",
    runtimes: ["onnxruntime", "tfjs", "tessera-data"],
    capabilities: ["training", "inference", "evaluation", "preprocessing"],
    cpuCores: 2,
    ramTotalBytes: RAM,
    maxConcurrentJobs: slots,
    pricePerHour: "0",
    sequence: BigInt(Date.now()) * 1000n,
    issuedAt: timestampFromMs(Date.now()),
  }),
  keyPair,
  difficulty,
);
const registered = await nodes.registerNode({ protocolVersion: PROTOCOL_VERSION, record });
const heartbeatMs = Number(registered.heartbeatIntervalMs);
const heartbeat = setInterval(() => {
  void call("Heartbeat", () =>
    nodes.heartbeat({
      protocolVersion: PROTOCOL_VERSION,
      nodeAddress,
      load: load(),
      activeLeaseIds: [...active.values()],
    }),
  ).catch((error: unknown) => {
    if (!stopping.signal.aborted) {
      tellParent({ type: "failed", id: "", message: `heartbeat: ${String(error)}` });
    }
  });
}, heartbeatMs);
stopping.signal.addEventListener("abort", () => clearInterval(heartbeat));
await receive();
