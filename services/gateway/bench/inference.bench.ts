/**
 * Inference through the gateway, with dynamic batching on and off, against the same model run
 * in-process with onnxruntime-node in this script. The gateway (free subnet: no registry, no
 * wallet) and one compute node are real processes started from their built binaries; clients
 * submit one-row tasks with several keys at once and follow each to COMPLETED.
 *
 *   pnpm --filter @tessera/gateway bench
 *   BENCH_TASKS=2000 BENCH_CONCURRENCY=64 pnpm --filter @tessera/gateway bench
 *
 * The model is a dense network built here with @tessera/ml (256 features -> 2048 relu -> 2048 relu
 * -> 10 softmax), heavy enough per row that batching has something to share. Printed: tasks/s
 * and p50/p95 per task for each mode, in-process rows/s at batch 1 and at the batch size the
 * node ran, and the ratios the issue sets aims for (batching >= 2x the throughput of no batching
 * at <= 1.2x its p95; the network path within 10% of in-process at the same batch size).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { sha256, toHex } from "@tessera/identity/hash";
import { generateKeyPair } from "@tessera/identity/keys";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { exportOnnx } from "@tessera/ml/onnx-export";
import { ort } from "@tessera/ml/onnxruntime";
import { validateSequentialModel } from "@tessera/ml/sequential-model";
import { packRawTensors, RAW_TENSORS_MEDIA_TYPE } from "@tessera/ml/tensors";
import { InferenceTaskState } from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { type GatewayClient, openGatewayClient } from "@tessera/sdk/gateway-client";
import { SDK_PROTOCOL_VERSION as V1 } from "@tessera/sdk/protocol-version";
import { type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";

const TASKS = Number(process.env.BENCH_TASKS ?? 1000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const CLIENT_KEYS = 8;
const FEATURES = 256;
const HIDDEN = 2048;
const CLASSES = 10;
const MAX_BATCH = 32;
const MODEL_ID = "bench-dense";
const servicesDir = fileURLToPath(new URL("../../", import.meta.url));
const entry = (name: string) => join(servicesDir, name, "dist", "main.js");

function denseModel(): Uint8Array {
  const model = validateSequentialModel({
    format: "tessera.sequential/v1",
    layers: [
      { type: "dense", units: HIDDEN, activation: "relu" },
      { type: "dense", units: HIDDEN, activation: "relu" },
      { type: "dense", units: CLASSES, activation: "softmax" },
    ],
    loss: "sparse_categorical_crossentropy",
  });
  const values = (count: number, seed: number, scale: number) =>
    Float32Array.from({ length: count }, (_, i) => Math.sin(seed + i * 0.37) * scale);
  return exportOnnx(model, FEATURES, [
    {
      inputs: FEATURES,
      units: HIDDEN,
      kernel: values(FEATURES * HIDDEN, 1, 0.1),
      bias: values(HIDDEN, 2, 0.1),
    },
    {
      inputs: HIDDEN,
      units: HIDDEN,
      kernel: values(HIDDEN * HIDDEN, 3, 0.05),
      bias: values(HIDDEN, 4, 0.1),
    },
    {
      inputs: HIDDEN,
      units: CLASSES,
      kernel: values(HIDDEN * CLASSES, 5, 0.05),
      bias: values(CLASSES, 6, 0.1),
    },
  ]);
}

function row(i: number): Float32Array {
  return Float32Array.from({ length: FEATURES }, (_, j) => Math.sin(i * 1.3 + j));
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;

interface Figures {
  readonly perSecond: number;
  readonly p50: number;
  readonly p95: number;
}

/** Runs `work(i)` for i < count with `concurrency` in flight; per-item latencies and throughput. */
async function drive(
  count: number,
  concurrency: number,
  work: (i: number) => Promise<void>,
): Promise<Figures> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const t0 = performance.now();
        await work(i);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    perSecond: count / seconds,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
  };
}

/** One gateway + one node run with the node's catalog batching set to `maxBatch`. */
async function networkRun(dir: string, modelBytes: Uint8Array, maxBatch: number): Promise<Figures> {
  const runDir = join(dir, `batch-${maxBatch}`);
  const catalog = join(runDir, "catalog.json");
  const gatewayKey = await loadOrCreateServiceKey({
    path: join(runDir, "gateway", "key.json"),
    name: "gateway",
  });
  await writeFile(join(dir, "dense.onnx"), modelBytes);
  await writeFile(
    catalog,
    JSON.stringify({
      format: "tessera.models/v1",
      models: [
        {
          model_id: MODEL_ID,
          name: "Bench dense",
          category: "tabular",
          version: "1",
          input_format: "tensor",
          output_format: "tensor",
          content: {
            digest: `sha256:${toHex(sha256(modelBytes))}`,
            size_bytes: modelBytes.length,
            uri: join(dir, "dense.onnx"),
            media_type: "application/onnx",
          },
          batching: { max_batch_size: maxBatch, max_delay_ms: maxBatch > 1 ? 2 : 0 },
        },
      ],
    }),
  );
  const common = { HOST: "127.0.0.1", PORT: "0", LOG_LEVEL: "info", POW_DIFFICULTY: "4" };
  const processes: SpawnedService[] = [];
  const gateways: GatewayClient[] = [];
  try {
    const gateway = await spawnService({
      entry: entry("gateway"),
      env: { ...common, DATA_DIR: join(runDir, "gateway"), MODELS_FILE: catalog },
      startTimeoutMs: 30_000,
    });
    processes.push(gateway);
    processes.push(
      await spawnService({
        entry: entry("compute-node"),
        env: {
          ...common,
          DATA_DIR: join(runDir, "node"),
          NVIDIA_SMI: "none",
          MODELS_FILE: catalog,
          GATEWAY_URL: gateway.url,
          GATEWAY_ADDRESS: gatewayKey.keyPair.address,
        },
        startTimeoutMs: 30_000,
      }),
    );
    for (let k = 0; k < CLIENT_KEYS; k++) {
      gateways.push(
        openGatewayClient({
          baseUrl: gateway.url,
          address: gatewayKey.keyPair.address,
          keyPair: generateKeyPair(),
        }),
      );
    }
    const clientOf = (i: number): GatewayClient => {
      const client = gateways[i % CLIENT_KEYS];
      if (client === undefined) throw new Error("no client");
      return client;
    };
    // Wait until the node has registered its model.
    for (const deadline = Date.now() + 30_000; ; ) {
      const { models } = await clientOf(0).tasks.listModels({ protocolVersion: V1 });
      if ((models[0]?.onlineNodeCount ?? 0) > 0) break;
      if (Date.now() > deadline) throw new Error("the node never registered its model");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const task = async (i: number) => {
      const client = clientOf(i);
      const { bytes, specs } = packRawTensors([
        {
          name: "input",
          dtype: "float32",
          shape: [1, FEATURES],
          data: new Uint8Array(row(i).buffer),
        },
      ]);
      const requestId = `b${maxBatch}-${i}`;
      await client.tasks.submitInferenceTask({
        protocolVersion: V1,
        requestId,
        modelId: MODEL_ID,
        input: bytes,
        inputMediaType: RAW_TENSORS_MEDIA_TYPE,
        inputTensors: specs,
        clientAddress: client.callerAddress,
      });
      for await (const update of client.tasks.subscribeToTaskUpdates({
        protocolVersion: V1,
        requestId,
      })) {
        const state = update.status?.state;
        if (state === InferenceTaskState.COMPLETED) return;
        if (state === InferenceTaskState.FAILED || state === InferenceTaskState.CANCELLED) {
          throw new Error(`task ${requestId}: ${update.status?.errorMessage}`);
        }
      }
      throw new Error(`task ${requestId}: the stream ended early`);
    };
    await drive(Math.min(100, TASKS), CONCURRENCY, (i) => task(TASKS + i)); // warm-up
    return await drive(TASKS, CONCURRENCY, task);
  } finally {
    for (const g of gateways) g.close();
    for (const p of processes.reverse()) await p.stop("SIGTERM");
  }
}

const dir = await mkdtemp(join(tmpdir(), "tessera-inference-bench-"));
const modelBytes = denseModel();
try {
  // In-process baseline: one session, the node's default threads, rows run 1 at a time and MAX_BATCH at a time.
  const session = await ort.InferenceSession.create(modelBytes);
  const runRows = async (start: number, rows: number) => {
    const input = new Float32Array(rows * FEATURES);
    for (let r = 0; r < rows; r++) input.set(row(start + r), r * FEATURES);
    await session.run({ input: new ort.Tensor("float32", input, [rows, FEATURES]) });
  };
  await drive(200, 1, (i) => runRows(i, 1));
  const inProcess1 = await drive(TASKS, 1, (i) => runRows(i, 1));
  const batches = Math.ceil(TASKS / MAX_BATCH);
  const inProcessBatch = await drive(batches, 1, (i) => runRows(i * MAX_BATCH, MAX_BATCH));
  await session.release();

  const off = await networkRun(dir, modelBytes, 1);
  const on = await networkRun(dir, modelBytes, MAX_BATCH);

  const f = (x: number) => x.toFixed(2);
  console.log(
    `Inference of one-row tasks (${FEATURES}->${HIDDEN}->${HIDDEN}->${CLASSES}), ${TASKS} tasks, ${CONCURRENCY} in flight, ${CLIENT_KEYS} client keys`,
  );
  console.log(
    `gateway, batching off (max 1)        ${off.perSecond.toFixed(0).padStart(7)} tasks/s   p50 ${f(off.p50)} ms   p95 ${f(off.p95)} ms`,
  );
  console.log(
    `gateway, batching on (max ${MAX_BATCH}, 2 ms)  ${on.perSecond.toFixed(0).padStart(7)} tasks/s   p50 ${f(on.p50)} ms   p95 ${f(on.p95)} ms`,
  );
  console.log(
    `in-process onnxruntime, batch 1      ${inProcess1.perSecond.toFixed(0).padStart(7)} rows/s    p50 ${f(inProcess1.p50)} ms   p95 ${f(inProcess1.p95)} ms`,
  );
  console.log(
    `in-process onnxruntime, batch ${MAX_BATCH}     ${(inProcessBatch.perSecond * MAX_BATCH).toFixed(0).padStart(7)} rows/s    p50 ${f(inProcessBatch.p50)} ms per batch`,
  );
  console.log(
    `batching on / off: throughput ${f(on.perSecond / off.perSecond)}x (aim >= 2x), p95 ${f(on.p95 / off.p95)}x (aim <= 1.2x)`,
  );
  console.log(
    `network / in-process: batch 1 ${f(off.perSecond / inProcess1.perSecond)}x, batch ${MAX_BATCH} ${f(on.perSecond / (inProcessBatch.perSecond * MAX_BATCH))}x (aim >= 0.9x)`,
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
