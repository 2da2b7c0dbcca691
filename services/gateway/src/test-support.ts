/**
 * Test-only: a gateway started in this process on port 0, signed clients for it, and compute
 * nodes played by the test over the real GatewayComputeService protocol with keys of their own.
 * A test node "runs" the model `affine` (y = 2x + 1 on float32 rows): the test is the node, so
 * what it computes is the test's business; the gateway only sees signed results.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, type DescService } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import { sha256 } from "@tessera/identity/hash";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { signComputeCompletion } from "@tessera/identity/validation-bundle";
import { createContentCache } from "@tessera/ml/content-cache";
import { readModelCatalog } from "@tessera/ml/model-catalog";
import { createModelHost, type HostedModel } from "@tessera/ml/model-host";
import {
  decodeTaskInput,
  packRawTensors,
  RAW_TENSORS_MEDIA_TYPE,
  type RawTensor,
} from "@tessera/ml/tensors";
import {
  ComputeCompletionSchema,
  type ModelDescriptor,
  ModelDescriptorSchema,
  NodeRecordSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { GatewayClientService } from "@tessera/proto/tessera/gateway/v1/gateway_client_service_pb.js";
import { GatewayComputeService } from "@tessera/proto/tessera/gateway/v1/gateway_compute_service_pb.js";
import {
  InferenceOutcome,
  type InferenceTask,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import type { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { createLogger, parseConfig, type ServiceServer } from "@tessera/runtime";
import { gatewayConfigSpec } from "./config.js";
import { PROTOCOL_VERSION } from "./protocol-version.js";
import { startGatewayServer } from "./server.js";

/** Proof-of-work bits of test records: low, so they seal in milliseconds. */
export const TEST_POW = 4;

/** Every signer in the test process shares one clock-driven nonce source. */
const nonces = createNonceSource();

/** The test model: float32 rows of 2 in, rows of 2 out (y = 2x + 1). */
export function affineModel(modelId = "affine"): ModelDescriptor {
  return create(ModelDescriptorSchema, {
    modelId,
    name: "Affine test model",
    category: "tabular",
    version: "1",
    inputFormat: "tensor",
    outputFormat: "tensor",
    inputs: [{ name: "x", shape: [-1n, 2n], dtype: "float32" }],
    outputs: [{ name: "y", shape: [-1n, 2n], dtype: "float32" }],
  });
}

/** Raw-tensor input of `rows` (float32, 2 columns) named `name`: bytes and specs. */
export function affineInput(rows: readonly (readonly number[])[], name = "x") {
  const data = new Float32Array(rows.flat());
  return packRawTensors([
    {
      name,
      dtype: "float32",
      shape: [rows.length, 2],
      data: new Uint8Array(data.buffer),
    },
  ]);
}

/** The floats packed in a float32 raw-tensor buffer. */
export function floatsOf(bytes: Uint8Array): number[] {
  const copy = new Uint8Array(bytes);
  return [...new Float32Array(copy.buffer, 0, copy.length / 4)];
}

/** A signed client of `service` at `url`, signed by `keyPair` for `target`. */
export function signedClient<S extends DescService>(
  service: S,
  url: string,
  keyPair: KeyPair,
  target: string,
  sessions: Http2SessionManager[],
): Client<S> {
  const session = new Http2SessionManager(url);
  sessions.push(session);
  return createClient(
    service,
    createGrpcTransport({
      baseUrl: url,
      sessionManager: session,
      defaultTimeoutMs: 30_000,
      interceptors: [createSigningInterceptor({ keyPair, target, nonceSource: nonces })],
    }),
  );
}

/** An unsigned client (open reads). */
export function openClient<S extends DescService>(
  service: S,
  url: string,
  sessions: Http2SessionManager[],
): Client<S> {
  const session = new Http2SessionManager(url);
  sessions.push(session);
  return createClient(service, createGrpcTransport({ baseUrl: url, sessionManager: session }));
}

/** A gateway running in this process. */
export interface TestGateway {
  readonly server: ServiceServer;
  readonly url: string;
  readonly address: string;
  readonly dataDir: string;
  /** GatewayClientService signed by `keyPair`. */
  client(keyPair: KeyPair): Client<typeof GatewayClientService>;
  /** GatewayComputeService signed by `keyPair`. */
  compute(keyPair: KeyPair): Client<typeof GatewayComputeService>;
  close(): Promise<void>;
}

/**
 * Starts a gateway on port 0 with short timings; `env` overrides the configuration (a DATA_DIR
 * given there is used as is, so a test can make the gateway's key first).
 */
export async function startTestGateway(env: Record<string, string> = {}): Promise<TestGateway> {
  const dataDir = env.DATA_DIR ?? (await mkdtemp(join(tmpdir(), "gateway-test-")));
  const { keyPair } = await loadOrCreateServiceKey({
    path: join(dataDir, "key.json"),
    name: "gateway",
  });
  const server = await startGatewayServer(
    parseConfig(gatewayConfigSpec, {
      HOST: "127.0.0.1",
      PORT: "0",
      POW_DIFFICULTY: String(TEST_POW),
      HEARTBEAT_INTERVAL_MS: "200",
      NODE_TIMEOUT_MS: "1000",
      SWEEP_INTERVAL_MS: "50",
      SHUTDOWN_GRACE_MS: "1000",
      ...env,
      DATA_DIR: dataDir,
    }),
    createLogger({
      service: "gateway-test",
      level: process.env.GATEWAY_TEST_LOG === "1" ? "debug" : "silent",
    }),
  );
  const sessions: Http2SessionManager[] = [];
  const clients = new Map<string, Client<typeof GatewayClientService>>();
  const computes = new Map<string, Client<typeof GatewayComputeService>>();
  const memo = <C>(cache: Map<string, C>, k: KeyPair, make: () => C): C => {
    const known = cache.get(k.address);
    if (known !== undefined) return known;
    const made = make();
    cache.set(k.address, made);
    return made;
  };
  return {
    server,
    url: server.url,
    address: keyPair.address,
    dataDir,
    client: (k) =>
      memo(clients, k, () =>
        signedClient(GatewayClientService, server.url, k, keyPair.address, sessions),
      ),
    compute: (k) =>
      memo(computes, k, () =>
        signedClient(GatewayComputeService, server.url, k, keyPair.address, sessions),
      ),
    async close() {
      for (const session of sessions.splice(0)) session.abort();
      await server.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** How a test node answers a task: the affine result, a failure, or nothing (it hangs). */
export type Answer = "compute" | "fail" | "ignore";

const exampleCatalog = fileURLToPath(
  new URL("../../../examples/models/catalog.json", import.meta.url),
);

/**
 * The example ONNX model (examples/models, blobs-classifier: 2 floats in, 3 class probabilities
 * out) loaded warm under each of `modelIds` (same content, one id per test), for test nodes
 * whose results validators re-execute.
 */
export async function hostExampleModel(
  modelIds: readonly string[],
  cacheDir: string,
): Promise<{ models: HostedModel[]; close: () => Promise<void> }> {
  const [example] = await readModelCatalog(exampleCatalog);
  if (example === undefined) throw new Error(`${exampleCatalog} lists no model`);
  const host = createModelHost({ cache: createContentCache({ dir: cacheDir }) });
  const models: HostedModel[] = [];
  for (const modelId of modelIds) {
    models.push(await host.load({ ...example, descriptor: { ...example.descriptor, modelId } }));
  }
  return { models, close: () => host.close() };
}

/** Options of {@link TestNode}. */
export interface TestNodeOptions {
  /** Models the node lists and "runs" as y = 2x + 1; default one `affine` model. */
  readonly models?: readonly ModelDescriptor[];
  /** Real models the node lists and runs (validators re-execute these). */
  readonly hosted?: readonly HostedModel[];
  readonly pricePerHour?: string;
  readonly payoutAddress?: string;
  /** Endpoint of the node's TensorService (only listed; nothing listens). */
  readonly endpointUrl?: string;
}

/** A compute node played by the test. */
export class TestNode {
  readonly keyPair = generateKeyPair();
  readonly payoutAddress: string;
  /** Request ids of each delivery on the task stream, in order. */
  readonly deliveries: string[][] = [];
  /** How the node answers the next tasks. */
  answer: Answer = "compute";
  /** Request ids the gateway told this node to stop. */
  readonly cancelled = new Set<string>();
  private readonly models: readonly ModelDescriptor[];
  private readonly gateway: Client<typeof GatewayComputeService>;
  private readonly options: TestNodeOptions;
  private stream: AbortController | undefined;
  private heartbeats: NodeJS.Timeout | undefined;
  private readonly received = new Map<string, InferenceTask>();
  private readonly pending = new Set<Promise<unknown>>();

  constructor(gateway: TestGateway, options: TestNodeOptions = {}) {
    this.options = options;
    this.models = [
      ...(options.models ?? (options.hosted === undefined ? [affineModel()] : [])),
      ...(options.hosted ?? []).map((hosted) => hosted.descriptor),
    ];
    this.payoutAddress = options.payoutAddress ?? generateKeyPair().address;
    this.gateway = gateway.compute(this.keyPair);
  }

  get address(): string {
    return this.keyPair.address;
  }

  /** The node's sealed record (sequence grows with each call). */
  async record(sequence = 1n) {
    return sealNodeRecord(
      create(NodeRecordSchema, {
        protocolVersion: PROTOCOL_VERSION,
        nodeType: NodeType.COMPUTE,
        name: "test-node",
        softwareVersion: "0.0.0",
        endpoint: { url: this.options.endpointUrl ?? "http://127.0.0.1:9" },
        capabilities: ["inference", "tensor"],
        models: [...this.models],
        subnetId: 0n,
        payoutAddress: this.payoutAddress,
        pricePerHour: this.options.pricePerHour ?? "3600000",
        maxConcurrentJobs: 4,
        sequence,
        issuedAt: timestampNow(),
      }),
      this.keyPair,
      TEST_POW,
    );
  }

  /** Registers with the registry and keeps heartbeating it (paid tests). */
  async joinRegistry(registry: Client<typeof RegistryService>): Promise<() => void> {
    await registry.registerNode({ protocolVersion: PROTOCOL_VERSION, record: await this.record() });
    const beat = () =>
      registry
        .updateNodeHeartbeat({
          protocolVersion: PROTOCOL_VERSION,
          nodeAddress: this.address,
          load: { freeSlots: 4 },
        })
        .catch(() => undefined);
    await beat();
    const timer = setInterval(() => void beat(), 300);
    return () => clearInterval(timer);
  }

  /** RegisterComputeNode with the gateway. */
  async register() {
    return this.gateway.registerComputeNode({
      protocolVersion: PROTOCOL_VERSION,
      record: await this.record(),
    });
  }

  /** Heartbeats the gateway every `intervalMs` until {@link stop}. */
  startHeartbeats(intervalMs = 200): void {
    const beat = async () => {
      const answer = await this.gateway
        .updateHeartbeat({
          protocolVersion: PROTOCOL_VERSION,
          nodeAddress: this.address,
          load: { activeJobIds: [], freeSlots: 4 },
        })
        .catch(() => undefined);
      for (const id of answer?.cancelledRequestIds ?? []) this.cancelled.add(id);
    };
    void beat();
    this.heartbeats = setInterval(() => void beat(), intervalMs);
  }

  /** Opens the task stream and answers what arrives per {@link answer}. */
  openStream(maxBatchSize = 1): void {
    const controller = new AbortController();
    this.stream = controller;
    const run = async () => {
      try {
        for await (const delivery of this.gateway.receiveTask(
          { protocolVersion: PROTOCOL_VERSION, nodeAddress: this.address, maxBatchSize },
          { signal: controller.signal, timeoutMs: 0 },
        )) {
          this.deliveries.push(delivery.tasks.map((task) => task.requestId));
          for (const task of delivery.tasks) {
            this.received.set(task.requestId, task);
            if (this.answer !== "ignore") this.track(this.respond(task, this.answer));
          }
        }
      } catch (error) {
        // The stream ended (closed by the test or the gateway).
        if (process.env.GATEWAY_TEST_LOG === "1") console.error("test node stream ended", error);
      }
    };
    this.track(run());
  }

  private track(work: Promise<unknown>): void {
    const tracked = work.catch((error) => {
      if (process.env.GATEWAY_TEST_LOG === "1") console.error("test node failed", error);
    });
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  }

  /** The task as received on the stream. */
  task(requestId: string): InferenceTask | undefined {
    return this.received.get(requestId);
  }

  /** The outputs of `task`: the hosted model's, or y = scale·x + 1. */
  private async outputs(task: InferenceTask, scale: number): Promise<RawTensor[]> {
    const hosted = this.options.hosted?.find((h) => h.descriptor.modelId === task.modelId);
    const model = hosted?.descriptor ?? this.models.find((m) => m.modelId === task.modelId);
    const inputs = decodeTaskInput(
      task.input,
      task.inputMediaType,
      task.inputTensors,
      model ?? affineModel(task.modelId),
    );
    if (hosted !== undefined) return hosted.forward(inputs);
    const [x] = inputs as [RawTensor];
    const values = new Float32Array(new Uint8Array(x.data).buffer).map((v) => scale * v + 1);
    return [
      { name: "y", dtype: "float32", shape: [...x.shape], data: new Uint8Array(values.buffer) },
    ];
  }

  /** The result this node would submit for `task`. */
  async result(task: InferenceTask, answer: "compute" | "fail", scale = 2) {
    let output: Uint8Array = new Uint8Array();
    let outputTensors: ReturnType<typeof packRawTensors>["specs"] = [];
    if (answer === "compute") {
      const packed = packRawTensors(await this.outputs(task, scale));
      output = packed.bytes;
      outputTensors = packed.specs;
    }
    const completion = signComputeCompletion(
      create(ComputeCompletionSchema, {
        protocolVersion: PROTOCOL_VERSION,
        requestId: task.requestId,
        computeNodeAddress: this.address,
        resultHash: sha256(output),
        completedAt: timestampNow(),
        computationTimeMs: 1n,
      }),
      this.keyPair,
    );
    return {
      protocolVersion: PROTOCOL_VERSION,
      requestId: task.requestId,
      modelId: task.modelId,
      outcome: answer === "compute" ? InferenceOutcome.SUCCEEDED : InferenceOutcome.FAILED,
      output,
      outputMediaType: answer === "compute" ? RAW_TENSORS_MEDIA_TYPE : "",
      outputTensors,
      errorMessage: answer === "fail" ? "the test node failed on purpose" : "",
      computeCompletion: completion,
    };
  }

  /** Submits this node's result for `task`. */
  async respond(task: InferenceTask, answer: "compute" | "fail" = "compute", scale = 2) {
    return this.gateway.submitResult({
      protocolVersion: PROTOCOL_VERSION,
      result: await this.result(task, answer, scale),
    });
  }

  /** The node's compute client (to call it directly with this node's key). */
  get computeClient(): Client<typeof GatewayComputeService> {
    return this.gateway;
  }

  /** Closes the task stream (the node stays registered and may beat). */
  closeStream(): void {
    this.stream?.abort();
    this.stream = undefined;
  }

  /** Vanishes: no more heartbeats, no stream. */
  async stop(): Promise<void> {
    clearInterval(this.heartbeats);
    this.heartbeats = undefined;
    this.closeStream();
    await Promise.all([...this.pending]);
  }
}

/** Polls `check` every 25 ms until it returns a value other than undefined or `timeoutMs` passes. */
export async function eventually<T>(
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 10_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
