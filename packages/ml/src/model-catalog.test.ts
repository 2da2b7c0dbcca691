import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";
import { ModelCatalogError, readModelCatalog } from "./model-catalog.js";

const DIGEST = `sha256:${"ab".repeat(32)}`;

function entry(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_id: "blobs-classifier",
    name: "Blobs classifier",
    category: "tabular",
    content: {
      digest: DIGEST,
      size_bytes: 1234,
      uri: "models/blobs.onnx",
      media_type: "application/onnx",
    },
    inputs: [{ name: "input", shape: [-1, 2], dtype: "float32" }],
    ...extra,
  };
}

async function withCatalog(doc: unknown, check: (path: string, dir: string) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), "tessera-catalog-"));
  try {
    const path = join(dir, "catalog.json");
    await writeFile(path, typeof doc === "string" ? doc : JSON.stringify(doc));
    await check(path, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("a catalog entry becomes a descriptor with an absolute file:// URI and default batching", async () => {
  await withCatalog({ format: "tessera.models/v1", models: [entry()] }, async (path, dir) => {
    const [model] = await readModelCatalog(path);
    assert.ok(model);
    const d = model.descriptor;
    assert.equal(d.modelId, "blobs-classifier");
    assert.equal(d.content?.uri, pathToFileURL(join(dir, "models/blobs.onnx")).href);
    assert.equal(d.content?.digest, DIGEST);
    assert.equal(d.content?.sizeBytes, 1234n);
    assert.deepEqual(
      d.inputs.map((s) => [s.name, s.shape, s.dtype]),
      [["input", [-1n, 2n], "float32"]],
    );
    assert.deepEqual(d.outputs, []);
    assert.equal(d.supportsBackward, true);
    assert.deepEqual(model.batching, { maxBatchSize: 32, maxDelayMs: 2 });
  });
});

test("explicit batching, absolute URIs and supports_backward false are kept", async () => {
  const doc = {
    format: "tessera.models/v1",
    models: [
      entry({
        supports_backward: false,
        batching: { max_batch_size: 8, max_delay_ms: 0 },
        content: { digest: DIGEST, uri: "https://models.example/m.onnx" },
      }),
    ],
  };
  await withCatalog(doc, async (path) => {
    const [model] = await readModelCatalog(path);
    assert.deepEqual(model?.batching, { maxBatchSize: 8, maxDelayMs: 0 });
    assert.equal(model?.descriptor.supportsBackward, false);
    assert.equal(model?.descriptor.content?.uri, "https://models.example/m.onnx");
    assert.equal(model?.descriptor.content?.mediaType, "application/onnx");
  });
});

test("invalid catalogs are refused naming the file and the key", async () => {
  const cases: [unknown, RegExp][] = [
    [
      { format: "tessera.models/v1", models: [entry({ colour: "red" })] },
      /models\[0\]\.colour is not a known key/,
    ],
    [
      {
        format: "tessera.models/v1",
        models: [entry({ content: { digest: "sha256:AB", uri: "m.onnx" } })],
      },
      /models\[0\]\.content\.digest must be "sha256:<64 lowercase hex>"/,
    ],
    [{ format: "tessera.models/v2", models: [] }, /catalog\.format must be "tessera\.models\/v1"/],
    [
      { format: "tessera.models/v1", models: [entry(), entry()] },
      /models\[1\]\.model_id "blobs-classifier" appears twice/,
    ],
    [
      { format: "tessera.models/v1", models: [entry({ batching: { max_batch_size: 0 } })] },
      /models\[0\]\.batching\.max_batch_size must be an integer in \[1, 65536\]/,
    ],
    [
      {
        format: "tessera.models/v1",
        models: [entry({ inputs: [{ name: "x", shape: [-1], dtype: "complex" }] })],
      },
      /models\[0\]\.inputs\[0\]\.dtype must be one of/,
    ],
    ["{not json", /is not valid JSON/],
  ];
  for (const [doc, message] of cases) {
    await withCatalog(doc, async (path) => {
      await assert.rejects(readModelCatalog(path), (error: unknown) => {
        assert.ok(error instanceof ModelCatalogError);
        assert.match(error.message, message);
        assert.ok(error.message.includes(path));
        return true;
      });
    });
  }
  await assert.rejects(readModelCatalog("/nonexistent/catalog.json"), /cannot be read/);
});
