#!/usr/bin/env node
// Regenerates the committed examples/models/blobs-classifier.onnx and examples/models/catalog.json.
// The model is trained by @tessera/ml's own training code (packages/ml/dist/training.js, so run
// `pnpm --filter @tessera/ml build` first) on examples/data/blobs.csv with the layer list of
// examples/models/classifier.json, seed 0, 20 epochs of 32 rows, and exported to ONNX by that
// code. Training is byte-for-byte reproducible, so the file and its digest are the same on every
// machine. Run `node examples/models/build-hosted-model.mjs` to write both files, `--check` to
// verify that the committed files are exactly what this script writes.
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runTraining } from "../../packages/ml/dist/training.js";

const here = dirname(fileURLToPath(import.meta.url));
const MODEL_FILE = "blobs-classifier.onnx";
const JOB_TYPE_TRAINING = 1;

async function build() {
  const workDir = await mkdtemp(join(tmpdir(), "tessera-hosted-model-"));
  try {
    const output = await runTraining(
      {
        // The fields of a tessera.job.v1.JobSpec that training reads.
        spec: {
          jobId: "example-hosted-blobs-classifier",
          jobType: JOB_TYPE_TRAINING,
          hyperparameters: { label_column: "label", seed: "0" },
          epochs: 20,
          batchSize: 32,
        },
        modelPath: join(here, "classifier.json"),
        modelMediaType: "application/vnd.tessera.sequential+json",
        datasetPath: join(here, "..", "data", "blobs.csv"),
        datasetMediaType: "text/csv",
      },
      { workDir, signal: new AbortController().signal },
    );
    const artifact = output.artifacts.find((a) => a.name === "model");
    if (artifact === undefined) throw new Error("training produced no model artifact");
    const onnx = await readFile(artifact.path);
    const catalog = {
      format: "tessera.models/v1",
      models: [
        {
          model_id: "blobs-classifier",
          name: "Blobs classifier",
          category: "tabular",
          version: "1",
          description:
            "Classifies 2-D points into three Gaussian blobs (examples/data/blobs.csv); output = class probabilities",
          input_format: "tensor",
          output_format: "tensor",
          content: {
            digest: `sha256:${createHash("sha256").update(onnx).digest("hex")}`,
            size_bytes: onnx.length,
            uri: MODEL_FILE,
            media_type: "application/onnx",
          },
          inputs: [{ name: "input", shape: [-1, 2], dtype: "float32" }],
          outputs: [{ name: "output", shape: [-1, 3], dtype: "float32" }],
          supports_backward: true,
          batching: { max_batch_size: 32, max_delay_ms: 2 },
        },
      ],
    };
    return {
      onnx,
      // Number lists on one line, as the repository's formatter (Biome) writes them.
      catalog: `${JSON.stringify(catalog, null, 2).replace(/\[\s*((?:-?\d+,\s*)*-?\d+)\s*\]/g, (_, n) => `[${n.split(/,\s*/).join(", ")}]`)}\n`,
      accuracy: output.finalMetrics["train/accuracy"],
    };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

const { onnx, catalog, accuracy } = await build();
const onnxPath = join(here, MODEL_FILE);
const catalogPath = join(here, "catalog.json");
if (process.argv.includes("--check")) {
  const sameModel = Buffer.compare(await readFile(onnxPath), onnx) === 0;
  const sameCatalog = (await readFile(catalogPath, "utf8")) === catalog;
  if (!sameModel || !sameCatalog) {
    console.error(
      `${sameModel ? "" : `${MODEL_FILE} `}${sameCatalog ? "" : "catalog.json "}differ from what this script writes`,
    );
    process.exit(1);
  }
  console.log("examples/models is up to date");
} else {
  await writeFile(onnxPath, onnx);
  await writeFile(catalogPath, catalog);
  console.log(
    `wrote ${MODEL_FILE} (${onnx.length} bytes, train accuracy ${accuracy}) and catalog.json`,
  );
}
