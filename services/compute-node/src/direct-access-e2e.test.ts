/**
 * Direct access end to end, as real processes: a gateway serving a free subnet (no registry, no
 * wallet) and a compute node hosting the example classifier, started from their built binaries.
 * A client asks the gateway for direct access, then calls the node's TensorService itself with
 * the gateway's short-lived token (Bittensor Forward/Backward, CyxWiz P2P): Forward equals
 * onnxruntime on the same file, Backward equals central finite differences of it, and the token
 * only works for what it was issued for. Tensors that do not match their shape and dtype, or that
 * are too large, are refused with their codes.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { generateKeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { readModelCatalog } from "@tessera/ml/model-catalog";
import { ort } from "@tessera/ml/onnxruntime";
import {
  DataType,
  type Tensor,
  type TensorMessage,
  TensorMessageSchema,
  TensorSchema,
} from "@tessera/proto/tessera/compute/v1/tensor_pb.js";
import { TensorService } from "@tessera/proto/tessera/compute/v1/tensor_service_pb.js";
import type { RequestDirectAccessResponse } from "@tessera/proto/tessera/gateway/v1/gateway_client_service_pb.js";
import { type GatewayClient, openGatewayClient } from "@tessera/sdk/gateway-client";
import { SDK_PROTOCOL_VERSION as V1 } from "@tessera/sdk/protocol-version";
import { type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";
import { createSignedTransport, type SignedTransport } from "./peers/signed-transport.js";
import { assertServicesBuilt, freePort, serviceEntry } from "./test-network.js";

await assertServicesBuilt();

const CATALOG = fileURLToPath(new URL("../../../examples/models/catalog.json", import.meta.url));
const MODEL_ID = "blobs-classifier";
/** The node's tensor limit here: 64 KiB, so an oversize request is cheap to make. */
const MAX_TENSOR_BYTES = 65_536;

let dir: string;
let gatewayProcess: SpawnedService;
let nodeProcess: SpawnedService;
let gateway: GatewayClient;
let grant: RequestDirectAccessResponse;
let connection: SignedTransport;
let tensors: ReturnType<typeof createClient<typeof TensorService>>;
let direct: ort.InferenceSession;
const client = generateKeyPair();

async function run(values: Float32Array): Promise<Float32Array> {
  const out = await direct.run({
    input: new ort.Tensor("float32", values, [values.length / 2, 2]),
  });
  return out.output?.data as Float32Array;
}

function floatTensor(
  name: string,
  values: Float32Array,
  shape: number[],
  requiresGrad = false,
): Tensor {
  return create(TensorSchema, {
    name,
    buffer: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
    shape: shape.map(BigInt),
    dtype: DataType.FLOAT32,
    requiresGrad,
  });
}

function floats(tensor: Tensor | undefined): Float32Array {
  assert.ok(tensor !== undefined);
  return new Float32Array(Uint8Array.from(tensor.buffer).buffer);
}

function message(list: Tensor[], overrides: Partial<TensorMessage> = {}): TensorMessage {
  return create(TensorMessageSchema, {
    protocolVersion: V1,
    callerAddress: client.address,
    targetAddress: grant.nodeAddress,
    modelId: MODEL_ID,
    accessToken: grant.accessToken,
    jobId: "session-1",
    tensors: list,
    ...overrides,
  });
}

async function codeOf(call: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await call;
  } catch (error) {
    const e = ConnectError.from(error);
    return { code: e.code, message: e.rawMessage };
  }
  assert.fail("the call succeeded");
}

describe("direct access to a node with a gateway's token (real processes)", {
  timeout: 180_000,
}, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-direct-e2e-"));
    const gatewayKey = await loadOrCreateServiceKey({
      path: join(dir, "gateway", "key.json"),
      name: "gateway",
    });
    const common = {
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      POW_DIFFICULTY: "4",
      SHUTDOWN_GRACE_MS: "1000",
    };
    gatewayProcess = await spawnService({
      entry: serviceEntry("gateway"),
      env: {
        ...common,
        DATA_DIR: join(dir, "gateway"),
        MODELS_FILE: CATALOG,
        HEARTBEAT_INTERVAL_MS: "300",
        NODE_TIMEOUT_MS: "1500",
      },
      startTimeoutMs: 30_000,
    });
    const nodePort = await freePort();
    nodeProcess = await spawnService({
      entry: serviceEntry("compute-node"),
      env: {
        ...common,
        PORT: String(nodePort),
        DATA_DIR: join(dir, "node"),
        NVIDIA_SMI: "none",
        MODELS_FILE: CATALOG,
        GATEWAY_URL: gatewayProcess.url,
        GATEWAY_ADDRESS: gatewayKey.keyPair.address,
        PUBLIC_URL: `http://127.0.0.1:${nodePort}`,
        MAX_TENSOR_BYTES: String(MAX_TENSOR_BYTES),
      },
      startTimeoutMs: 30_000,
    });
    gateway = openGatewayClient({
      baseUrl: gatewayProcess.url,
      address: gatewayKey.keyPair.address,
      keyPair: client,
    });
    const [model] = await readModelCatalog(CATALOG);
    assert.ok(model?.descriptor.content !== undefined);
    direct = await ort.InferenceSession.create(
      await readFile(fileURLToPath(model.descriptor.content.uri)),
    );
    for (const deadline = Date.now() + 30_000; ; ) {
      try {
        grant = await gateway.tasks.requestDirectAccess({
          protocolVersion: V1,
          requestId: "session-1",
          modelId: MODEL_ID,
          clientAddress: client.address,
          ttlMs: 60_000n,
        });
        break;
      } catch (error) {
        // Until the node has registered its model, no node can be granted.
        if (ConnectError.from(error).code !== Code.Unavailable || Date.now() > deadline)
          throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    assert.equal(grant.endpoint?.url, `http://127.0.0.1:${nodePort}`);
    connection = createSignedTransport({
      baseUrl: grant.endpoint?.url ?? "",
      target: grant.nodeAddress,
      keyPair: client,
      nonceSource: createNonceSource(),
    });
    tensors = createClient(TensorService, connection.transport);
  });

  after(async () => {
    connection?.close();
    gateway?.close();
    await direct?.release();
    await nodeProcess?.stop("SIGTERM");
    await gatewayProcess?.stop("SIGTERM");
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test("the grant names the node, its key, the model and a short expiry", () => {
    assert.equal(grant.model?.modelId, MODEL_ID);
    assert.equal(grant.nodePublicKey.length, 32);
    const expiresMs = Number(grant.tokenExpiresAt?.seconds ?? 0n) * 1000;
    assert.ok(expiresMs > Date.now() && expiresMs <= Date.now() + 61_000);
  });

  test("Forward with the token equals onnxruntime on the same model", async () => {
    const values = Float32Array.from([1.2, -1.1, -2.2, -1.9, 0.1, 2.3]);
    const response = await tensors.forward({
      message: message([floatTensor("input", values, [3, 2])]),
    });
    const out = floats(response.message?.tensors.find((t) => t.name === "output"));
    const want = await run(values);
    assert.equal(out.length, want.length);
    for (let i = 0; i < want.length; i++) {
      assert.ok(Math.abs((out[i] ?? 0) - (want[i] ?? 0)) <= 1e-6, `output[${i}]`);
    }
  });

  test("Backward returns dL/dinput equal to finite differences of the model", async () => {
    const x = Float32Array.from([0.4, -0.7, -1.5, 0.9]);
    const gradOut = Float32Array.from([0.3, -0.5, 0.2, -0.1, 0.6, 0.25]);
    const response = await tensors.backward({
      message: message([
        floatTensor("input", x, [2, 2], true),
        floatTensor("grad/output", gradOut, [2, 3]),
      ]),
    });
    const grad = floats(response.message?.tensors.find((t) => t.name === "grad/input"));
    const eps = 1e-3;
    for (let i = 0; i < x.length; i++) {
      const plus = Float32Array.from(x);
      const minus = Float32Array.from(x);
      plus[i] = (plus[i] ?? 0) + eps;
      minus[i] = (minus[i] ?? 0) - eps;
      const [up, down] = [await run(plus), await run(minus)];
      let numeric = 0;
      for (let j = 0; j < gradOut.length; j++) {
        numeric += ((gradOut[j] ?? 0) * ((up[j] ?? 0) - (down[j] ?? 0))) / (2 * eps);
      }
      assert.ok(Math.abs((grad[i] ?? 0) - numeric) <= 2e-3, `grad[${i}] ${grad[i]} vs ${numeric}`);
    }
  });

  test("the token works only for its client, model and job; without one the node refuses", async () => {
    const input = floatTensor("input", Float32Array.from([1, 2]), [1, 2]);
    assert.equal(
      (await codeOf(tensors.forward({ message: message([input], { accessToken: "" }) }))).code,
      Code.Unauthenticated,
    );
    assert.equal(
      (await codeOf(tensors.forward({ message: message([input], { jobId: "session-2" }) }))).code,
      Code.PermissionDenied,
    );
    // Another client presenting this client's token (signing its own calls) is refused.
    const mallory = generateKeyPair();
    const theirs = createSignedTransport({
      baseUrl: grant.endpoint?.url ?? "",
      target: grant.nodeAddress,
      keyPair: mallory,
      nonceSource: createNonceSource(),
    });
    try {
      const stolen = createClient(TensorService, theirs.transport).forward({
        message: message([input], { callerAddress: mallory.address }),
      });
      assert.equal((await codeOf(stolen)).code, Code.PermissionDenied);
    } finally {
      theirs.close();
    }
  });

  test("a buffer that does not match its shape, and an oversize tensor, get their codes", async () => {
    const short = floatTensor("input", Float32Array.from([1, 2, 3]), [2, 2]);
    const bad = await codeOf(tensors.forward({ message: message([short]) }));
    assert.equal(bad.code, Code.InvalidArgument);
    assert.match(bad.message, /input/);
    const rows = MAX_TENSOR_BYTES / 8 + 1;
    const big = floatTensor("input", new Float32Array(rows * 2), [rows, 2]);
    const oversize = await codeOf(tensors.forward({ message: message([big]) }));
    assert.equal(oversize.code, Code.ResourceExhausted);
    assert.match(oversize.message, /65536/);
  });
});
