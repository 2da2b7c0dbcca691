/** Media types the executors read and write (see the batch contract, "Content"). */
import { JobInputError } from "./errors.js";

/** A dataset with a header row. */
export const CSV_MEDIA_TYPE = "text/csv";
/** A dataset with one JSON object per line; also the predictions artifact. */
export const NDJSON_MEDIA_TYPE = "application/x-ndjson";
/** An ONNX model (serialized onnx.ModelProto). */
export const ONNX_MEDIA_TYPE = "application/onnx";
/** A declarative layer-list model document, see sequential-model.ts. */
export const SEQUENTIAL_MEDIA_TYPE = "application/vnd.tessera.sequential+json";
/** Trained weights of a sequential model, see weights.ts. */
export const WEIGHTS_MEDIA_TYPE = "application/vnd.tessera.weights+json";
/** Metrics documents. */
export const JSON_MEDIA_TYPE = "application/json";

/** The two table formats datasets come in. */
export type TableFormat = "csv" | "ndjson";

function baseType(mediaType: string | undefined): string {
  return (mediaType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

/**
 * The table format of a dataset, from its media type or, when that is empty, its file name
 * (.csv, .ndjson, .jsonl).
 * @throws JobInputError for any other media type.
 */
export function datasetFormatOf(mediaType: string | undefined, path: string): TableFormat {
  const base = baseType(mediaType);
  if (base === CSV_MEDIA_TYPE) return "csv";
  if (base === NDJSON_MEDIA_TYPE || base === "application/jsonl") return "ndjson";
  if (base === "") {
    const lower = path.toLowerCase();
    if (lower.endsWith(".csv")) return "csv";
    if (lower.endsWith(".ndjson") || lower.endsWith(".jsonl")) return "ndjson";
  }
  throw new JobInputError(
    `dataset media type ${JSON.stringify(base)} is not supported (use ${CSV_MEDIA_TYPE} or ${NDJSON_MEDIA_TYPE})`,
  );
}

/** The kinds of model file the executors read. */
export type ModelFormat = "onnx" | "sequential";

/**
 * The kind of a model file, from its media type or, when that is empty, its file name
 * (.onnx, .json).
 * @throws JobInputError for any other media type.
 */
export function modelFormatOf(mediaType: string | undefined, path: string): ModelFormat {
  const base = baseType(mediaType);
  if (base === ONNX_MEDIA_TYPE) return "onnx";
  if (base === SEQUENTIAL_MEDIA_TYPE) return "sequential";
  if (base === "") {
    const lower = path.toLowerCase();
    if (lower.endsWith(".onnx")) return "onnx";
    if (lower.endsWith(".json")) return "sequential";
  }
  throw new JobInputError(
    `model media type ${JSON.stringify(base)} is not supported (use ${ONNX_MEDIA_TYPE} or ${SEQUENTIAL_MEDIA_TYPE})`,
  );
}

/** Media type of a table format. */
export function mediaTypeOfFormat(format: TableFormat): string {
  return format === "csv" ? CSV_MEDIA_TYPE : NDJSON_MEDIA_TYPE;
}
