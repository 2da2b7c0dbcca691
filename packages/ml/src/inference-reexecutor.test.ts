import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { sha256 } from "@tessera/identity/hash";
import { ExecutionEvidenceSchema } from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import * as ort from "onnxruntime-node";
import type { ReexecutionTask } from "./batch-reexecutor.js";
import { createContentCache } from "./content-cache.js";
import { createInferenceReexecutor } from "./inference-reexecutor.js";
import { readModelCatalog } from "./model-catalog.js";
import { JSON_MEDIA_TYPE, packRawTensors, RAW_TENSORS_MEDIA_TYPE } from "./tensors.js";

const CATALOG = fileURLToPath(new URL("../../../examples/models/catalog.json", import.meta.url));
const MODEL_FILE = fileURLToPath(
  new URL("../../../examples/models/blobs-classifier.onnx", import.meta.url),
);

let dir: string;
let reexecutor: ReturnType<typeof createInferenceReexecutor>;
let resolved: string[];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-inference-reexec-"));
  const [model] = await readModelCatalog(CATALOG);
  const ref = model?.descriptor.content;
  assert.ok(ref);
  resolved = [];
  reexecutor = createInferenceReexecutor({
    cache: createContentCache({ dir }),
    async resolveModel(task) {
      resolved.push(task.modelId);
      return task.modelId === "blobs-classifier" ? ref : undefined;
    },
  });
});

after(async () => {
  await reexecutor.close();
  await rm(dir, { recursive: true, force: true });
});

const ROWS = [
  [-2, -1.5],
  [2, -1],
  [0.3, 2.2],
];

/** What an honest node returns: the model's output bytes, run with onnxruntime directly. */
async function honestOutput(): Promise<Uint8Array> {
  const session = await ort.InferenceSession.create(await readFile(MODEL_FILE));
  try {
    const out = await session.run({
      input: new ort.Tensor("float32", Float32Array.from(ROWS.flat()), [ROWS.length, 2]),
    });
    const data = out.output?.data as Float32Array;
    return packRawTensors([
      {
        name: "output",
        dtype: "float32",
        shape: [ROWS.length, 3],
        data: new Uint8Array(data.buffer),
      },
    ]).bytes;
  } finally {
    await session.release();
  }
}

function task(
  result: Uint8Array,
  options: { json?: boolean; hash?: Uint8Array; modelId?: string } = {},
): ReexecutionTask {
  const input = options.json
    ? {
        bytes: new TextEncoder().encode(JSON.stringify(ROWS)),
        specs: [],
        mediaType: JSON_MEDIA_TYPE,
      }
    : {
        ...packRawTensors([
          {
            name: "input",
            dtype: "float32",
            shape: [ROWS.length, 2],
            data: new Uint8Array(Float32Array.from(ROWS.flat()).buffer),
          },
        ]),
        mediaType: RAW_TENSORS_MEDIA_TYPE,
      };
  return {
    requestId: "task-1",
    modelId: options.modelId ?? "blobs-classifier",
    subnetId: 0n,
    computeNodeAddress: "node-1",
    resultHash: options.hash ?? sha256(result),
    evidence: create(ExecutionEvidenceSchema, {
      input: { case: "inputData", value: input.bytes },
      inputMediaType: input.mediaType,
      inputTensors: input.specs,
      result: { case: "resultData", value: result },
      resultMediaType: RAW_TENSORS_MEDIA_TYPE,
    }),
  };
}

test("an honest result agrees, from raw-tensor and from JSON input", async () => {
  const output = await honestOutput();
  const raw = task(output);
  assert.equal(reexecutor.supports(raw), true);
  assert.deepEqual(await reexecutor.reexecute(raw, new AbortController().signal), { agrees: true });
  const json = task(output, { json: true });
  assert.equal(reexecutor.supports(json), true);
  assert.deepEqual(await reexecutor.reexecute(json, new AbortController().signal), {
    agrees: true,
  });
  assert.ok(resolved.every((id) => id === "blobs-classifier"));
});

test("a tampered output element disagrees, naming the output and element", async () => {
  const output = Uint8Array.from(await honestOutput());
  const view = new DataView(output.buffer);
  view.setFloat32(4 * 4, view.getFloat32(4 * 4, true) + 0.01, true);
  const verdict = await reexecutor.reexecute(task(output), new AbortController().signal);
  assert.deepEqual(verdict, {
    agrees: false,
    reason:
      'tessera-ml-inference: output "output" element 4 differs from re-execution beyond tolerance 0.0001',
  });
});

test("a wrong hash or a result of the wrong length disagrees", async () => {
  const output = await honestOutput();
  const wrongHash = await reexecutor.reexecute(
    task(output, { hash: sha256(Uint8Array.of(1)) }),
    new AbortController().signal,
  );
  assert.equal(wrongHash.agrees, false);
  assert.match(wrongHash.reason ?? "", /does not hash to the signed result hash/);
  const short = await reexecutor.reexecute(
    task(output.subarray(0, 32)),
    new AbortController().signal,
  );
  assert.equal(short.agrees, false);
  assert.match(
    short.reason ?? "",
    /the result has 32 bytes, the model's outputs for this input take 36/,
  );
});

test("evidence without tensors is not supported; an unknown model throws instead of a verdict", async () => {
  const output = await honestOutput();
  const other = task(output);
  other.evidence.inputMediaType = "application/vnd.tessera.job+proto";
  assert.equal(reexecutor.supports(other), false);
  await assert.rejects(
    reexecutor.reexecute(task(output, { modelId: "unknown" }), new AbortController().signal),
    /model unknown is not known to this validator/,
  );
});
