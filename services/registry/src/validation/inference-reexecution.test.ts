/**
 * Where the registry's inference re-executor may take a hosted model from: the routed node's
 * record names it by content, a `file://` model must lie inside MODEL_DIRS, and a pinned model id
 * must name the pinned digest. A task it cannot check throws (the validator does not sign); one it
 * can is re-run for real with the example classifier.
 */
import assert from "node:assert/strict";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { create } from "@bufbuild/protobuf";
import { sha256 } from "@tessera/identity/hash";
import { readModelCatalog } from "@tessera/ml/model-catalog";
import { packRawTensors, RAW_TENSORS_MEDIA_TYPE } from "@tessera/ml/tensors";
import { type ContentRef, NodeRecordSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { NodeEntrySchema } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { ExecutionEvidenceSchema } from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import { createInferenceReexecution } from "./inference-reexecution.js";

const CATALOG = fileURLToPath(new URL("../../../../examples/models/catalog.json", import.meta.url));
const NODE = "tsr1node";

let dir: string;
let content: ContentRef;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-registry-inference-"));
  const [model] = await readModelCatalog(CATALOG);
  assert.ok(model?.descriptor.content !== undefined);
  content = model.descriptor.content;
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An executor whose directory says node NODE hosts the model at `ref`. */
function executorFor(ref: ContentRef, modelDirs: readonly string[], modelsFile = "") {
  const record = create(NodeRecordSchema, {
    address: NODE,
    models: [{ modelId: "blobs-classifier", content: ref }],
  });
  return createInferenceReexecution({
    sources: {
      getNode: async (address) =>
        address === NODE ? create(NodeEntrySchema, { record }) : undefined,
    },
    dataDir: dir,
    modelDirs,
    modelsFile,
  });
}

/** A task with one input row and the output the node claims. */
function task(output: Uint8Array, outputName = "output") {
  const input = packRawTensors([
    {
      name: "input",
      dtype: "float32",
      shape: [1, 2],
      data: new Uint8Array(Float32Array.of(0.5, -1).buffer),
    },
  ]);
  const result = packRawTensors([
    { name: outputName, dtype: "float32", shape: [1, 3], data: output },
  ]);
  return {
    requestId: "t1",
    modelId: "blobs-classifier",
    subnetId: 0n,
    computeNodeAddress: NODE,
    resultHash: sha256(result.bytes),
    evidence: create(ExecutionEvidenceSchema, {
      input: { case: "inputData", value: input.bytes },
      inputMediaType: RAW_TENSORS_MEDIA_TYPE,
      inputTensors: input.specs,
      result: { case: "resultData", value: result.bytes },
      resultMediaType: RAW_TENSORS_MEDIA_TYPE,
    }),
  };
}

test("a model inside MODEL_DIRS is used: a made-up output disagrees", async () => {
  const executor = await executorFor(content, [dirname(CATALOG)]);
  try {
    const made = task(new Uint8Array(Float32Array.of(1, 0, 0).buffer));
    assert.ok(executor.supports(made));
    const verdict = await executor.reexecute(made, new AbortController().signal);
    assert.equal(verdict.agrees, false);
  } finally {
    await executor.close();
  }
});

test("a file:// model outside MODEL_DIRS is refused, so the validator cannot sign", async () => {
  const elsewhere = join(dir, "copy.onnx");
  await copyFile(fileURLToPath(content.uri), elsewhere);
  const executor = await executorFor({ ...content, uri: pathToFileURL(elsewhere).href }, [
    dirname(CATALOG),
  ]);
  try {
    await assert.rejects(
      executor.reexecute(task(new Uint8Array(12)), new AbortController().signal),
      /outside MODEL_DIRS/,
    );
  } finally {
    await executor.close();
  }
});

test("a node naming other bytes for a pinned model id is not believed", async () => {
  const other = join(dir, "other.onnx");
  await writeFile(
    other,
    Buffer.concat([await readFile(fileURLToPath(content.uri)), Buffer.from([0])]),
  );
  const pins = join(dir, "pins.json");
  await writeFile(pins, await readFile(CATALOG));
  const digest = `sha256:${Buffer.from(sha256(await readFile(other))).toString("hex")}`;
  const executor = await executorFor(
    { ...content, digest, uri: pathToFileURL(other).href },
    [dir],
    pins,
  );
  try {
    await assert.rejects(
      executor.reexecute(task(new Uint8Array(12)), new AbortController().signal),
      /pinned to sha256:/,
    );
  } finally {
    await executor.close();
  }
});
