/**
 * Test-only helpers: a real job server on port 0 over a test store backend, signed clients of its
 * services, and a test compute node that drives the real NodeService, JobStatusService and
 * ArtifactService over the network (register, stream, accept, progress, upload, signed result).
 */
import { createHash, randomUUID } from "node:crypto";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import { createNonceSource } from "@tessera/identity/nonce";
import { resultHash } from "@tessera/identity/result-manifest";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { signComputeCompletion } from "@tessera/identity/validation-bundle";
import {
  ComputeCompletionSchema,
  type ContentRef,
  ContentRefSchema,
  type NodeRecord,
  NodeRecordSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { ArtifactService } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import {
  type Assignment,
  type JobCancellation,
  JobResultSchema,
  type JobSpec,
  JobSpecSchema,
  JobState,
  JobType,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  JobService,
  type StreamJobUpdatesResponse,
} from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import {
  JobStatusService,
  type ReportJobResultRequest,
  ReportJobResultRequestSchema,
} from "@tessera/proto/tessera/job/v1/job_status_service_pb.js";
import {
  LeaseOutcome,
  NodeService,
  type ReceiveAssignmentsResponse,
} from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import { createLogger, parseConfig, type ServiceServer } from "@tessera/runtime";
import type { StoreBackend } from "@tessera/store/testing";
import { jobServerConfigSpec } from "./config.js";
import { PROTOCOL_VERSION } from "./protocol-version.js";
import { startJobServerServer } from "./server.js";

/** The protocol version test clients speak. */
export const V1 = PROTOCOL_VERSION;

/** A running test job server. */
export interface TestJobServer {
  readonly server: ServiceServer;
  readonly url: string;
  /** The server's address (clients sign for it). */
  readonly address: string;
  close(): Promise<void>;
}

/** Fast timings for tests; each can be overridden. */
export const FAST_ENV: Readonly<Record<string, string>> = {
  HOST: "127.0.0.1",
  PORT: "0",
  POW_DIFFICULTY: "0",
  HEARTBEAT_INTERVAL_MS: "200",
  LEASE_TIMEOUT_MS: "3000",
  ACCEPT_TIMEOUT_MS: "3000",
  SWEEP_INTERVAL_MS: "50",
  DISPATCH_POLL_MS: "100",
  UPDATES_POLL_MS: "50",
  KEEPALIVE_INTERVAL_MS: "500",
  SHUTDOWN_GRACE_MS: "200",
  PEER_TIMEOUT_MS: "10000",
};

/**
 * Starts a job server whose database is `space` of `backend` (its own SQLite file under the
 * suite's scratch directory, or its own PostgreSQL schema); servers started on the same space
 * share the queue (a restart, or replicas). Its key lives in the space's directory unless
 * `keyName` names another one.
 */
export async function startTestJobServer(
  backend: StoreBackend,
  space: string,
  env: Record<string, string> = {},
  keyName = space,
): Promise<TestJobServer> {
  const location = backend.location(space);
  const dataDir = join(location.dataDir, `job-server-${space}`);
  const keyFile = join(location.dataDir, `job-server-key-${keyName}.json`);
  const config = parseConfig(jobServerConfigSpec, {
    ...FAST_ENV,
    DATA_DIR: dataDir,
    KEY_FILE: keyFile,
    ...(location.databaseUrl === undefined ? {} : { DATABASE_URL: location.databaseUrl }),
    ...env,
  });
  const { keyPair } = await loadOrCreateServiceKey({ path: keyFile, name: "job-server" });
  const server = await startJobServerServer(
    config,
    createLogger({ service: "job-server-test", level: "silent" }),
    { storeSchema: location.schema },
  );
  return { server, url: server.url, address: keyPair.address, close: () => server.close() };
}

/** Signed clients of one job server for one key. */
export interface SignedClients {
  readonly keyPair: KeyPair;
  readonly jobs: Client<typeof JobService>;
  readonly nodes: Client<typeof NodeService>;
  readonly status: Client<typeof JobStatusService>;
  readonly artifacts: Client<typeof ArtifactService>;
  close(): void;
}

/** Clients of the server at `url` (address `target`) signing with `keyPair` (default a new key). */
export function signedClients(
  url: string,
  target: string,
  keyPair = generateKeyPair(),
): SignedClients {
  const session = new Http2SessionManager(url);
  const transport = createConnectTransport({
    baseUrl: url,
    httpVersion: "2",
    sessionManager: session,
    interceptors: [createSigningInterceptor({ keyPair, target, nonceSource: createNonceSource() })],
  });
  return {
    keyPair,
    jobs: createClient(JobService, transport),
    nodes: createClient(NodeService, transport),
    status: createClient(JobStatusService, transport),
    artifacts: createClient(ArtifactService, transport),
    close: () => session.abort(),
  };
}

/** "sha256:<hex>" of `bytes`. */
export function digestOf(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** A ContentRef of `bytes` (no URI: the node is assumed to have it). */
export function contentRef(bytes: Uint8Array, mediaType: string, uri = ""): ContentRef {
  return create(ContentRefSchema, {
    digest: digestOf(bytes),
    sizeBytes: BigInt(bytes.length),
    mediaType,
    uri,
  });
}

const DATASET = new TextEncoder().encode("x,label\n1,0\n2,1\n");
const MODEL = new TextEncoder().encode('{"format":"tessera.sequential/v1","layers":[]}');

/** A valid free inference spec with id `jobId` (the model runs on "onnxruntime"). */
export function freeSpec(
  jobId: string,
  overrides: Omit<MessageInitShape<typeof JobSpecSchema>, "$typeName"> = {},
): JobSpec {
  return create(JobSpecSchema, {
    protocolVersion: V1,
    jobId,
    jobType: JobType.INFERENCE,
    model: {
      modelId: "iris-mlp",
      source: "onnx",
      content: contentRef(MODEL, "application/onnx"),
    },
    dataset: contentRef(DATASET, "text/csv"),
    ...overrides,
  });
}

/** Collects a server stream into a queue that tests read with deadlines. */
export class EventQueue<T> {
  readonly #items: T[] = [];
  readonly #waiters: Array<() => void> = [];
  ended = false;
  error: unknown;

  push(item: T): void {
    this.#items.push(item);
    for (const wake of this.#waiters.splice(0)) wake();
  }

  end(error?: unknown): void {
    this.ended = true;
    this.error = error;
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** The first item (removed) matching `match`, waiting up to `timeoutMs`. */
  async take(match: (item: T) => boolean, timeoutMs = 10_000, what = "an event"): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.#items.findIndex(match);
      if (index >= 0) return this.#items.splice(index, 1)[0] as T;
      if (this.ended) throw new Error(`stream ended before ${what}: ${String(this.error)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Everything received so far (not removed). */
  peek(): readonly T[] {
    return this.#items;
  }
}

/** Reads `stream` into a queue in the background. */
export function collect<T>(stream: AsyncIterable<T>): EventQueue<T> {
  const queue = new EventQueue<T>();
  void (async () => {
    try {
      for await (const item of stream) queue.push(item);
      queue.end();
    } catch (error) {
      queue.end(error);
    }
  })();
  return queue;
}

/** Watches a job's updates until the stream ends. */
export function watchJob(
  clients: SignedClients,
  jobId: string,
  afterSequence = 0n,
  signal?: AbortSignal,
): EventQueue<StreamJobUpdatesResponse> {
  return collect(
    clients.jobs.streamJobUpdates(
      { protocolVersion: V1, jobId, afterSequence },
      { timeoutMs: 60_000, ...(signal === undefined ? {} : { signal }) },
    ),
  );
}

/** Options of a {@link TestNode}. */
export interface TestNodeOptions {
  readonly maxConcurrentJobs?: number;
  readonly pricePerHour?: string;
  readonly runtimes?: readonly string[];
  readonly models?: readonly string[];
  readonly keyPair?: KeyPair;
}

/** One output file of a test job. */
export interface TestOutput {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly mediaType: string;
}

/**
 * A compute node for tests: a real client of the job server's node-facing services. It plays the
 * node's part of the protocol; it runs no models (its outputs are whatever the test hands it).
 */
export class TestNode {
  readonly clients: SignedClients;
  readonly options: TestNodeOptions;
  events: EventQueue<ReceiveAssignmentsResponse> | undefined;
  #stream: AbortController | undefined;

  constructor(url: string, serverAddress: string, options: TestNodeOptions = {}) {
    this.clients = signedClients(url, serverAddress, options.keyPair ?? generateKeyPair());
    this.options = options;
  }

  get address(): string {
    return this.clients.keyPair.address;
  }

  /** The sealed record of the last {@link register}. */
  record: NodeRecord | undefined;

  /** Registers a sealed record (sequence = now). */
  async register(): Promise<void> {
    const record = await sealNodeRecord(
      create(NodeRecordSchema, {
        protocolVersion: V1,
        nodeType: NodeType.COMPUTE,
        name: `test-node-${this.address.slice(-6)}`,
        softwareVersion: "test",
        runtimes: [...(this.options.runtimes ?? ["onnxruntime", "tfjs", "tessera-data"])],
        capabilities: ["training", "inference", "evaluation", "preprocessing"],
        cpuCores: 4,
        ramTotalBytes: 8n << 30n,
        maxConcurrentJobs: this.options.maxConcurrentJobs ?? 1,
        pricePerHour: this.options.pricePerHour ?? "0",
        models: (this.options.models ?? []).map((modelId) => ({ modelId })),
        sequence: BigInt(Date.now()) * 1000n + BigInt(Math.floor(Math.random() * 1000)),
        issuedAt: timestampFromMs(Date.now()),
      }),
      this.clients.keyPair,
      0,
    );
    this.record = record;
    await this.clients.nodes.registerNode({ protocolVersion: V1, record });
  }

  /** Opens the assignment stream (closing a previous one). */
  openStream(
    freeSlots = this.options.maxConcurrentJobs ?? 1,
  ): EventQueue<ReceiveAssignmentsResponse> {
    this.#stream?.abort();
    const controller = new AbortController();
    this.#stream = controller;
    this.events = collect(
      this.clients.nodes.receiveAssignments(
        {
          protocolVersion: V1,
          nodeAddress: this.address,
          load: { freeSlots, ramAvailableBytes: 8n << 30n },
        },
        { signal: controller.signal, timeoutMs: 120_000 },
      ),
    );
    return this.events;
  }

  /**
   * Opens the stream and waits for its first keepalive, so later calls with the same key cannot
   * overtake it (the server accepts a key's nonces only in increasing order).
   */
  async openStreamReady(freeSlots?: number): Promise<EventQueue<ReceiveAssignmentsResponse>> {
    const events = this.openStream(freeSlots);
    await events.take((item) => item.event.case === "keepalive", 10_000, "the first keepalive");
    return events;
  }

  /** Ends the assignment stream. */
  closeStream(): void {
    this.#stream?.abort();
    this.#stream = undefined;
  }

  /** The next assignment on the stream. */
  async nextAssignment(timeoutMs = 10_000): Promise<Assignment> {
    const event = await this.#events().take(
      (item) => item.event.case === "assignment",
      timeoutMs,
      `an assignment for ${this.address}`,
    );
    if (event.event.case !== "assignment") throw new Error("unreachable");
    return event.event.value;
  }

  /** The next cancellation on the stream. */
  async nextCancellation(timeoutMs = 10_000): Promise<JobCancellation> {
    const event = await this.#events().take(
      (item) => item.event.case === "cancellation",
      timeoutMs,
      "a cancellation",
    );
    if (event.event.case !== "cancellation") throw new Error("unreachable");
    return event.event.value;
  }

  #events(): EventQueue<ReceiveAssignmentsResponse> {
    if (this.events === undefined) throw new Error("open the stream first");
    return this.events;
  }

  accept(assignment: Assignment, accepted = true, rejectReason = "") {
    return this.clients.nodes.notifyJobAccepted({
      protocolVersion: V1,
      nodeAddress: this.address,
      jobId: assignment.jobId,
      leaseId: assignment.leaseId,
      accepted,
      rejectReason,
    });
  }

  progress(assignment: Assignment, progress: number, metrics: Record<string, number> = {}) {
    return this.clients.nodes.reportProgress({
      protocolVersion: V1,
      nodeAddress: this.address,
      jobId: assignment.jobId,
      leaseId: assignment.leaseId,
      progress,
      currentEpoch: 1,
      metrics,
      logs: [{ message: `at ${Math.round(progress * 100)}%` }],
    });
  }

  heartbeat(leaseIds: readonly string[], activeJobIds: readonly string[] = []) {
    const slots = this.options.maxConcurrentJobs ?? 1;
    return this.clients.nodes.heartbeat({
      protocolVersion: V1,
      nodeAddress: this.address,
      load: {
        freeSlots: Math.max(0, slots - activeJobIds.length),
        activeJobIds: [...activeJobIds],
        ramAvailableBytes: 8n << 30n,
      },
      activeLeaseIds: [...leaseIds],
    });
  }

  /** Uploads `output` for the assignment's job under its lease; returns its ContentRef. */
  async upload(assignment: Assignment, output: TestOutput): Promise<ContentRef> {
    const digest = digestOf(output.bytes);
    const uploadId = `up-${randomUUID()}`;
    const begun = await this.clients.artifacts.beginUpload({
      protocolVersion: V1,
      uploadId,
      name: output.name,
      mediaType: output.mediaType,
      sizeBytes: BigInt(output.bytes.length),
      digest,
      jobId: assignment.jobId,
      leaseId: assignment.leaseId,
    });
    if (begun.existingArtifact?.content !== undefined) return begun.existingArtifact.content;
    async function* chunks() {
      yield {
        protocolVersion: V1,
        uploadId,
        offset: 0n,
        data: output.bytes,
        sha256: new Uint8Array(createHash("sha256").update(output.bytes).digest()),
      };
    }
    await this.clients.artifacts.uploadChunks(chunks());
    const { artifact } = await this.clients.artifacts.commitUpload({
      protocolVersion: V1,
      uploadId,
      digest,
      sizeBytes: BigInt(output.bytes.length),
    });
    if (artifact?.content === undefined) throw new Error("commit answered no artifact");
    return artifact.content;
  }

  /**
   * Uploads the outputs and reports a COMPLETED result with a signed completion (what a real
   * node does); `tamper` lets a test break the completion before it is sent.
   */
  async reportResult(
    assignment: Assignment,
    outputs: readonly TestOutput[],
    tamper: (completion: ReturnType<typeof signComputeCompletion>) => typeof completion = (c) => c,
  ) {
    const artifacts = [];
    for (const output of outputs) {
      artifacts.push({ name: output.name, content: await this.upload(assignment, output) });
    }
    const completion = signComputeCompletion(
      create(ComputeCompletionSchema, {
        protocolVersion: V1,
        requestId: assignment.jobId,
        computeNodeAddress: this.address,
        resultHash: resultHash(
          artifacts.map((artifact) => ({ name: artifact.name, digest: artifact.content.digest })),
        ),
        completedAt: timestampFromMs(Date.now()),
        computationTimeMs: 42n,
      }),
      this.clients.keyPair,
    );
    this.lastReport = create(ReportJobResultRequestSchema, {
      protocolVersion: V1,
      nodeAddress: this.address,
      jobId: assignment.jobId,
      leaseId: assignment.leaseId,
      result: create(JobResultSchema, {
        protocolVersion: V1,
        jobId: assignment.jobId,
        state: JobState.COMPLETED,
        artifacts,
        finalMetrics: { "eval/accuracy": 0.9 },
        totalComputeTimeMs: 42n,
        computeCompletion: tamper(completion),
      }),
    });
    return this.clients.status.reportJobResult(this.lastReport);
  }

  /** The last ReportJobResult request sent (to replay it). */
  lastReport: ReportJobResultRequest | undefined;

  /** Closes the lease with `outcome`. */
  closeLease(assignment: Assignment, outcome = LeaseOutcome.RESULT_REPORTED, reason = "") {
    return this.clients.nodes.reportCompletion({
      protocolVersion: V1,
      nodeAddress: this.address,
      jobId: assignment.jobId,
      leaseId: assignment.leaseId,
      outcome,
      computeTimeMs: 42n,
      reason,
    });
  }

  /** Accepts, reports progress, uploads `outputs`, reports the result and closes the lease. */
  async run(assignment: Assignment, outputs: readonly TestOutput[] = [predictions()]) {
    await this.accept(assignment);
    await this.progress(assignment, 0.5, { "eval/loss": 0.3 });
    const answer = await this.reportResult(assignment, outputs);
    await this.closeLease(assignment);
    return answer;
  }

  close(): void {
    this.closeStream();
    this.clients.close();
  }
}

/** A "predictions" output. */
export function predictions(text = '{"y":[0.1,0.9]}\n'): TestOutput {
  return {
    name: "predictions",
    bytes: new TextEncoder().encode(text),
    mediaType: "application/x-ndjson",
  };
}
