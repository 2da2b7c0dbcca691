/**
 * Forward throughput for 4 MiB tensors: a real compute node (its built binary, its own process,
 * TensorService with signed calls and an issuer's access token) running a Relu model over a
 * [1024, 1024] float32 tensor, against the baseline of a raw Connect echo of the same
 * message (bench/echo-server.ts: the same runtime server as its own process, the same HTTP/2
 * transport, no signature, no token, no model), driven by the same client in this script. Both move 4 MiB up and 4 MiB back per call.
 *
 *   pnpm --filter @tessera/compute-node bench:forward
 *   BENCH_CALLS=100 BENCH_CONCURRENCY=4 pnpm --filter @tessera/compute-node bench:forward
 *
 * Prints MB/s (request payload megabytes per second, 1 MB = 2^20 bytes), p50/p95 per call, and
 * the ratio node / echo (issue #6 aims at >= 0.8).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import { issueAccessToken } from "@tessera/identity/access-token";
import { sha256, toHex } from "@tessera/identity/hash";
import { generateKeyPair } from "@tessera/identity/keys";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { onnx } from "@tessera/ml/onnx-proto";
import {
  DataType,
  Modality,
  TensorMessageSchema,
} from "@tessera/proto/tessera/compute/v1/tensor_pb.js";
import { TensorService } from "@tessera/proto/tessera/compute/v1/tensor_service_pb.js";
import { spawnService } from "@tessera/testkit/spawn-service";
import { NODE_PROTOCOL_VERSION } from "../src/protocol-version.js";

const CALLS = Number(process.env.BENCH_CALLS ?? 40);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 2);
const ROWS = 1024;
const COLUMNS = 1024;
const TENSOR_BYTES = ROWS * COLUMNS * 4; // 4 MiB
const MODEL_ID = "relu-1024";

/** An ONNX graph with one Relu: output = max(input, 0), float32 [-1, 1024]. */
function reluModel(): Uint8Array {
  const valueInfo = (name: string) => ({
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: [{ dimParam: "batch" }, { dimValue: COLUMNS }] },
      },
    },
  });
  const model = onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [{ domain: "", version: 13 }],
    producerName: "tessera-bench",
    graph: {
      name: "relu",
      node: [{ name: "relu", opType: "Relu", input: ["input"], output: ["output"] }],
      input: [valueInfo("input")],
      output: [valueInfo("output")],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

/** Runs `call` CALLS times with CONCURRENCY in flight; returns MB/s and per-call latencies. */
async function measure(call: () => Promise<void>) {
  for (let i = 0; i < 3; i++) await call(); // warm-up: sessions, JIT, model
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < CALLS) {
        next += 1;
        const t0 = performance.now();
        await call();
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    mbPerSecond: (CALLS * TENSOR_BYTES) / 2 ** 20 / seconds,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
  };
}

const dir = await mkdtemp(join(tmpdir(), "tessera-forward-bench-"));
const modelBytes = reluModel();
await writeFile(join(dir, "relu.onnx"), modelBytes);
await writeFile(
  join(dir, "catalog.json"),
  JSON.stringify({
    format: "tessera.models/v1",
    models: [
      {
        model_id: MODEL_ID,
        name: "Relu 1024",
        category: "tensor",
        version: "1",
        input_format: "tensor",
        output_format: "tensor",
        content: {
          digest: `sha256:${toHex(sha256(modelBytes))}`,
          size_bytes: modelBytes.length,
          uri: "relu.onnx",
          media_type: "application/onnx",
        },
        supports_backward: false,
        batching: { max_batch_size: 1, max_delay_ms: 0 },
      },
    ],
  }),
);

const issuer = generateKeyPair();
const client = generateKeyPair();
const nodeKey = await loadOrCreateServiceKey({ path: join(dir, "node", "key.json"), name: "node" });
// The node and the baseline each run as their own process, as in a network: the client's hashing
// and the server's run on different cores.
const node = await spawnService({
  entry: fileURLToPath(new URL("../dist/main.js", import.meta.url)),
  env: {
    HOST: "127.0.0.1",
    DATA_DIR: join(dir, "node"),
    MODELS_FILE: join(dir, "catalog.json"),
    TRUSTED_TOKEN_ISSUERS: issuer.address,
    POW_DIFFICULTY: "4",
    NVIDIA_SMI: "none",
    LOG_LEVEL: "info",
    SHUTDOWN_GRACE_MS: "500",
  },
  startTimeoutMs: 30_000,
});
const echo = await spawnService({
  entry: fileURLToPath(new URL("./echo-server.ts", import.meta.url)),
  env: { NODE_OPTIONS: "--import tsx" },
  startTimeoutMs: 30_000,
});
const nodeAddress = nodeKey.keyPair.address;

const input = new Float32Array(ROWS * COLUMNS);
for (let i = 0; i < input.length; i++) input[i] = Math.sin(i) * 2;
const { token } = issueAccessToken(
  issuer,
  { nodeAddress: nodeAddress, clientAddress: client.address, modelId: MODEL_ID, jobId: "bench" },
  { ttlMs: 600_000 },
);
const message = create(TensorMessageSchema, {
  protocolVersion: NODE_PROTOCOL_VERSION,
  callerAddress: client.address,
  targetAddress: nodeAddress,
  modelId: MODEL_ID,
  accessToken: token,
  jobId: "bench",
  tensors: [
    {
      name: "input",
      buffer: new Uint8Array(input.buffer),
      shape: [BigInt(ROWS), BigInt(COLUMNS)],
      dtype: DataType.FLOAT32,
      modality: Modality.TENSOR,
    },
  ],
});

const sessions: Http2SessionManager[] = [];
function tensorClient(baseUrl: string, signedFor?: string) {
  const sessionManager = new Http2SessionManager(baseUrl);
  sessions.push(sessionManager);
  return createClient(
    TensorService,
    createGrpcTransport({
      baseUrl,
      sessionManager,
      defaultTimeoutMs: 60_000,
      readMaxBytes: 64 * 2 ** 20,
      writeMaxBytes: 64 * 2 ** 20,
      // Float tensors do not compress; gzip would cost more than it saves (see README).
      acceptCompression: [],
      interceptors:
        signedFor === undefined
          ? []
          : [createSigningInterceptor({ keyPair: client, target: signedFor })],
    }),
  );
}
const toNode = tensorClient(node.url, nodeAddress);
const toEcho = tensorClient(echo.url);

let checked = false;
const nodeResult = await measure(async () => {
  const response = await toNode.forward({ message });
  const out = response.message?.tensors[0];
  if (!checked) {
    // The node really ran the model: Relu of the input.
    const values = new Float32Array(Uint8Array.from(out?.buffer ?? []).buffer);
    for (let i = 0; i < input.length; i += 4099) {
      if (values[i] !== Math.max(input[i] ?? 0, 0)) throw new Error(`wrong output at ${i}`);
    }
    checked = true;
  }
});
const echoResult = await measure(async () => {
  await toEcho.forward({ message });
});

for (const session of sessions) session.abort();
await node.stop("SIGTERM");
await echo.stop("SIGTERM");
await rm(dir, { recursive: true, force: true });

const row = (name: string, r: typeof nodeResult) =>
  `${name.padEnd(34)} ${r.mbPerSecond.toFixed(1).padStart(8)} MB/s   p50 ${r.p50.toFixed(2)} ms   p95 ${r.p95.toFixed(2)} ms`;
console.log(
  `Forward of one float32 [${ROWS}, ${COLUMNS}] tensor (4 MiB each way), ${CALLS} calls, ${CONCURRENCY} in flight`,
);
console.log(row("compute node (signed, token, Relu)", nodeResult));
console.log(row("raw Connect echo (baseline)", echoResult));
console.log(
  `ratio node / echo: ${(nodeResult.mbPerSecond / echoResult.mbPerSecond).toFixed(2)}x (aim >= 0.8x)`,
);
