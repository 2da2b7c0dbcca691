/**
 * Test fixture: a tiny ONNX classifier (2 inputs → 4 tanh → 3 softmax, fixed weights) exported by
 * @tessera/ml, and a model catalog (tessera.models/v1) that lists it, for suites that start a
 * node hosting a real model.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { sha256, toHex } from "@tessera/identity/hash";
import { exportOnnx } from "@tessera/ml/onnx-export";
import { validateSequentialModel } from "@tessera/ml/sequential-model";

/** Features per row of the tiny model's input ("input", float32 [-1, 2]). */
export const TINY_FEATURES = 2;
/** Classes of its output ("output", float32 [-1, 3], softmax). */
export const TINY_CLASSES = 3;

/** The tiny model's ONNX bytes (the same bytes every call). */
export function tinyModelBytes(): Uint8Array {
  const model = validateSequentialModel({
    format: "tessera.sequential/v1",
    layers: [
      { type: "dense", units: 4, activation: "tanh" },
      { type: "dense", units: TINY_CLASSES, activation: "softmax" },
    ],
    loss: "sparse_categorical_crossentropy",
  });
  const values = (count: number, seed: number) =>
    Float32Array.from({ length: count }, (_, i) => Math.sin(seed + i * 1.7) * 0.9);
  return exportOnnx(model, TINY_FEATURES, [
    { inputs: TINY_FEATURES, units: 4, kernel: values(TINY_FEATURES * 4, 1), bias: values(4, 2) },
    {
      inputs: 4,
      units: TINY_CLASSES,
      kernel: values(4 * TINY_CLASSES, 3),
      bias: values(TINY_CLASSES, 4),
    },
  ]);
}

/** One catalog entry of {@link writeTinyCatalog}. */
export interface TinyCatalogEntry {
  readonly modelId: string;
  readonly supportsBackward: boolean;
}

/**
 * Writes `tiny.onnx` and `catalog.json` (the entries, all on that file) into `dir`; returns the
 * catalog's path and the model's bytes. `digest` overrides the content digest (to test refusals).
 */
export async function writeTinyCatalog(
  dir: string,
  entries: readonly TinyCatalogEntry[],
  options: { digest?: string } = {},
): Promise<{ path: string; bytes: Uint8Array }> {
  const bytes = tinyModelBytes();
  await writeFile(join(dir, "tiny.onnx"), bytes);
  const content = {
    digest: options.digest ?? `sha256:${toHex(sha256(bytes))}`,
    size_bytes: bytes.length,
    uri: "tiny.onnx",
    media_type: "application/onnx",
  };
  const models = entries.map((entry) => ({
    model_id: entry.modelId,
    name: "Tiny classifier",
    category: "tabular",
    version: "1",
    description: "test model",
    input_format: "tensor",
    output_format: "tensor",
    content,
    inputs: [{ name: "input", shape: [-1, TINY_FEATURES], dtype: "float32" }],
    outputs: [{ name: "output", shape: [-1, TINY_CLASSES], dtype: "float32" }],
    supports_backward: entry.supportsBackward,
    batching: { max_batch_size: 16, max_delay_ms: 2 },
  }));
  const path = join(dir, "catalog.json");
  await writeFile(path, JSON.stringify({ format: "tessera.models/v1", models }));
  return { path, bytes };
}
