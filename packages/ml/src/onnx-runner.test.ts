import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { JobInputError } from "./errors.js";
import { exportOnnx } from "./onnx-export.js";
import { onnx } from "./onnx-proto.js";
import { openOnnxModel } from "./onnx-runner.js";
import { createRandom } from "./random.js";
import { runJob } from "./run-job.js";
import { validateSequentialModel } from "./sequential-model.js";
import { blobsCsv, gaussianBlobs, jobSpec } from "./test-fixtures.js";
import { createNetwork, ensureCpuBackend } from "./tf-network.js";

test("a model with a fixed batch size runs in padded batches with the same predictions", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tessera-ml-runner-"));
  try {
    await ensureCpuBackend();
    const model = validateSequentialModel({
      format: "tessera.sequential/v1",
      layers: [{ type: "dense", units: 2, activation: "sigmoid" }],
      loss: "binary_crossentropy",
    });
    const network = createNetwork(model, 4, { random: createRandom("fixed-batch") });
    const bytes = exportOnnx(model, 4, network.weights());
    network.dispose();
    const fixed = onnx.ModelProto.decode(bytes);
    const dims = fixed.graph?.input?.[0]?.type?.tensorType?.shape?.dim ?? [];
    dims[0] = onnx.TensorShapeProto.Dimension.create({ dimValue: 4 });
    const fixedBytes = onnx.ModelProto.encode(fixed).finish();
    const opened = await openOnnxModel(fixedBytes);
    assert.equal(opened.fixedBatch, 4);
    assert.equal(opened.inputWidth, 4);
    await opened.close();
    await opened.close();

    await writeFile(join(dir, "dynamic.onnx"), bytes);
    await writeFile(join(dir, "fixed.onnx"), fixedBytes);
    await writeFile(
      join(dir, "data.csv"),
      blobsCsv(gaussianBlobs({ rows: 10, classes: 2, features: 4, seed: 4 })),
    );
    const predictions = async (file: string) => {
      const out = await runJob(
        {
          spec: jobSpec(JobType.INFERENCE, { batchSize: 3 }),
          modelPath: join(dir, file),
          datasetPath: join(dir, "data.csv"),
        },
        { workDir: join(dir, `out-${file}`), signal: new AbortController().signal },
      );
      return readFile(out.artifacts[0]?.path ?? "", "utf8");
    };
    const viaFixed = await predictions("fixed.onnx");
    assert.equal(viaFixed.trimEnd().split("\n").length, 10);
    assert.equal(viaFixed, await predictions("dynamic.onnx"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("bytes that are not an ONNX model are a JobInputError", async () => {
  await assert.rejects(
    openOnnxModel(new TextEncoder().encode("definitely not onnx")),
    (error: unknown) => error instanceof JobInputError,
  );
});
