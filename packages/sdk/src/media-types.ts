/**
 * The media types of job inputs (see the batch-job contract): what a node is told a file is.
 */
import { extname } from "node:path";

/** A dataset with a header row. */
export const CSV = "text/csv";
/** One JSON object per line (datasets, predictions). */
export const NDJSON = "application/x-ndjson";
/** An ONNX model graph. */
export const ONNX = "application/onnx";
/** A declarative layer-list model document, format "tessera.sequential/v1". */
export const SEQUENTIAL_MODEL = "application/vnd.tessera.sequential+json";
/** Trained weights of a declarative model (as the training job's "weights" output). */
export const WEIGHTS = "application/vnd.tessera.weights+json";
/** JSON documents (metrics). */
export const JSON_MEDIA_TYPE = "application/json";
/** Bytes of no declared format. */
export const OCTET_STREAM = "application/octet-stream";

/** What a file is for: a `.json` model is a declarative model document, `.json` weights are
 * declarative-model weights, other `.json` is plain JSON. */
export type FileRole = "model" | "dataset" | "weights" | "other";

/**
 * The media type of the file at `path` from its extension: .csv text/csv, .ndjson/.jsonl
 * application/x-ndjson, .onnx application/onnx, .json the declarative model type for a model, the
 * weights type for weights and application/json otherwise; anything else
 * application/octet-stream.
 */
export function mediaTypeOf(path: string, role: FileRole = "other"): string {
  switch (extname(path).toLowerCase()) {
    case ".csv":
      return CSV;
    case ".ndjson":
    case ".jsonl":
      return NDJSON;
    case ".onnx":
      return ONNX;
    case ".json":
      return role === "model" ? SEQUENTIAL_MODEL : role === "weights" ? WEIGHTS : JSON_MEDIA_TYPE;
    default:
      return OCTET_STREAM;
  }
}
