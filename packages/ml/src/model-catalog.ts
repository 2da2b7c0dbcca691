/**
 * The model catalog file (`MODELS_FILE` of nodes and gateway): the models a node hosts, or the
 * models a gateway pins, with their content by digest.
 *
 * ```json
 * {"format":"tessera.models/v1","models":[{
 *   "model_id":"blobs-classifier","name":"Blobs classifier","category":"tabular","version":"1",
 *   "description":"…","input_format":"tensor","output_format":"tensor",
 *   "content":{"digest":"sha256:<hex>","size_bytes":1234,"uri":"blobs-classifier.onnx","media_type":"application/onnx"},
 *   "inputs":[{"name":"input","shape":[-1,2],"dtype":"float32"}],
 *   "outputs":[{"name":"output","shape":[-1,3],"dtype":"float32"}],
 *   "supports_backward":true,
 *   "batching":{"max_batch_size":32,"max_delay_ms":2}}]}
 * ```
 *
 * Required: `format`, `models`, and per model `model_id` and `content.digest` + `content.uri`.
 * A relative `uri` is resolved against the catalog file's directory into an absolute file:// URI.
 * `inputs`/`outputs` may be omitted (the model host fills them from the ONNX session);
 * `supports_backward` false disables Backward, true or omitted lets the host decide from the graph.
 * `batching` defaults to 32 rows and 2 ms. Unknown keys are refused.
 */
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { create } from "@bufbuild/protobuf";
import {
  ContentRefSchema,
  type ModelDescriptor,
  ModelDescriptorSchema,
  type TensorSpec,
  TensorSpecSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { DTYPE_NAMES, isDTypeName } from "./tensors.js";

/** The `format` value of a catalog file. */
export const MODEL_CATALOG_FORMAT = "tessera.models/v1";
/** Default most rows of one batched run. */
export const DEFAULT_MAX_BATCH_SIZE = 32;
/** Default longest wait for more requests before a batch runs. */
export const DEFAULT_MAX_DELAY_MS = 2;
/** Largest accepted `max_batch_size`. */
export const MAX_BATCH_SIZE_LIMIT = 65_536;
/** Largest accepted `max_delay_ms`. */
export const MAX_DELAY_MS_LIMIT = 10_000;

/** How a model's concurrent requests are batched. */
export interface BatchingSettings {
  /** Most rows of one run (≥ 1). */
  readonly maxBatchSize: number;
  /** Longest a request waits for others to join its batch (≥ 0). */
  readonly maxDelayMs: number;
}

/** One catalog entry. */
export interface CatalogModel {
  /** The descriptor; `content.uri` is absolute; `supportsBackward` is false only when the file says so. */
  readonly descriptor: ModelDescriptor;
  readonly batching: BatchingSettings;
}

/** The catalog file is unreadable or invalid; the message names the file and the key. */
export class ModelCatalogError extends Error {
  override readonly name = "ModelCatalogError";
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

type Json = Record<string, unknown>;

function fail(field: string, message: string): never {
  throw new ModelCatalogError(`${field} ${message}`);
}

function object(field: string, value: unknown, allowed: readonly string[]): Json {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    fail(field, "must be an object");
  const json = value as Json;
  for (const key of Object.keys(json)) {
    if (!allowed.includes(key))
      fail(`${field}.${key}`, `is not a known key (${allowed.join(", ")})`);
  }
  return json;
}

function text(field: string, value: unknown, fallback?: string): string {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== "string") fail(field, "must be a string");
  return value;
}

function integer(
  field: string,
  value: unknown,
  min: number,
  max: number,
  fallback?: number,
): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    fail(field, `must be an integer in [${min}, ${max}]`);
  }
  return value;
}

function specs(field: string, value: unknown): TensorSpec[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) fail(field, "must be a list");
  const names = new Set<string>();
  return value.map((item: unknown, i) => {
    const at = `${field}[${i}]`;
    const json = object(at, item, ["name", "shape", "dtype"]);
    const name = text(`${at}.name`, json.name);
    if (name === "") fail(`${at}.name`, "must not be empty");
    if (names.has(name)) fail(`${at}.name`, `"${name}" appears twice`);
    names.add(name);
    const dtype = text(`${at}.dtype`, json.dtype);
    if (!isDTypeName(dtype)) fail(`${at}.dtype`, `must be one of ${DTYPE_NAMES.join(", ")}`);
    if (!Array.isArray(json.shape))
      fail(`${at}.shape`, "must be a list of integers (-1 = dynamic)");
    const shape = json.shape.map((d: unknown, j) =>
      BigInt(integer(`${at}.shape[${j}]`, d, -1, Number.MAX_SAFE_INTEGER)),
    );
    return create(TensorSpecSchema, { name, dtype, shape });
  });
}

function contentUri(field: string, uri: string, baseDir: string): string {
  if (uri === "") fail(field, "must not be empty");
  if (/^[a-z][a-z0-9+.-]*:/i.test(uri)) return uri;
  return pathToFileURL(isAbsolute(uri) ? uri : resolve(baseDir, uri)).href;
}

function modelOf(field: string, value: unknown, baseDir: string): CatalogModel {
  const json = object(field, value, [
    "model_id",
    "name",
    "category",
    "version",
    "description",
    "input_format",
    "output_format",
    "content",
    "inputs",
    "outputs",
    "supports_backward",
    "batching",
  ]);
  const modelId = text(`${field}.model_id`, json.model_id);
  if (!MODEL_ID.test(modelId)) {
    fail(
      `${field}.model_id`,
      "must be 1-128 letters, digits, '.', '_' or '-' (starting with a letter or digit)",
    );
  }
  const content = object(`${field}.content`, json.content, [
    "digest",
    "size_bytes",
    "uri",
    "media_type",
  ]);
  const digest = text(`${field}.content.digest`, content.digest);
  if (!DIGEST.test(digest)) fail(`${field}.content.digest`, 'must be "sha256:<64 lowercase hex>"');
  const sizeBytes = integer(
    `${field}.content.size_bytes`,
    content.size_bytes,
    0,
    Number.MAX_SAFE_INTEGER,
    0,
  );
  const uri = contentUri(
    `${field}.content.uri`,
    text(`${field}.content.uri`, content.uri),
    baseDir,
  );
  const mediaType = text(`${field}.content.media_type`, content.media_type, "application/onnx");
  const supports = json.supports_backward;
  if (supports !== undefined && typeof supports !== "boolean") {
    fail(`${field}.supports_backward`, "must be true or false");
  }
  const batching = object(`${field}.batching`, json.batching ?? {}, [
    "max_batch_size",
    "max_delay_ms",
  ]);
  const descriptor = create(ModelDescriptorSchema, {
    modelId,
    source: "onnx",
    path: uri,
    name: text(`${field}.name`, json.name, modelId),
    category: text(`${field}.category`, json.category, ""),
    version: text(`${field}.version`, json.version, ""),
    description: text(`${field}.description`, json.description, ""),
    inputFormat: text(`${field}.input_format`, json.input_format, "tensor"),
    outputFormat: text(`${field}.output_format`, json.output_format, "tensor"),
    content: create(ContentRefSchema, { digest, sizeBytes: BigInt(sizeBytes), uri, mediaType }),
    inputs: specs(`${field}.inputs`, json.inputs),
    outputs: specs(`${field}.outputs`, json.outputs),
    supportsBackward: supports !== false,
  });
  return {
    descriptor,
    batching: {
      maxBatchSize: integer(
        `${field}.batching.max_batch_size`,
        batching.max_batch_size,
        1,
        MAX_BATCH_SIZE_LIMIT,
        DEFAULT_MAX_BATCH_SIZE,
      ),
      maxDelayMs: integer(
        `${field}.batching.max_delay_ms`,
        batching.max_delay_ms,
        0,
        MAX_DELAY_MS_LIMIT,
        DEFAULT_MAX_DELAY_MS,
      ),
    },
  };
}

/**
 * Parses catalog JSON text; relative URIs resolve against `baseDir`.
 * @throws ModelCatalogError naming the key that is wrong.
 */
export function parseModelCatalog(textValue: string, baseDir: string): CatalogModel[] {
  let value: unknown;
  try {
    value = JSON.parse(textValue);
  } catch {
    throw new ModelCatalogError("the catalog is not valid JSON");
  }
  const doc = object("catalog", value, ["format", "models"]);
  if (doc.format !== MODEL_CATALOG_FORMAT)
    fail("catalog.format", `must be "${MODEL_CATALOG_FORMAT}"`);
  if (!Array.isArray(doc.models)) fail("catalog.models", "must be a list");
  const models = doc.models.map((m: unknown, i) => modelOf(`models[${i}]`, m, baseDir));
  const seen = new Set<string>();
  models.forEach((m, i) => {
    if (seen.has(m.descriptor.modelId)) {
      fail(`models[${i}].model_id`, `"${m.descriptor.modelId}" appears twice`);
    }
    seen.add(m.descriptor.modelId);
  });
  return models;
}

/**
 * Reads the catalog file at `path` (see the module comment).
 * @throws ModelCatalogError naming the file and the key that is wrong.
 */
export async function readModelCatalog(path: string): Promise<CatalogModel[]> {
  let textValue: string;
  try {
    textValue = await readFile(path, "utf8");
  } catch (error) {
    throw new ModelCatalogError(
      `model catalog ${path} cannot be read: ${(error as Error).message}`,
    );
  }
  try {
    return parseModelCatalog(textValue, dirname(resolve(path)));
  } catch (error) {
    if (error instanceof ModelCatalogError) {
      throw new ModelCatalogError(`model catalog ${path}: ${error.message}`);
    }
    throw error;
  }
}
