/**
 * The ONNX bytes of a job's model: an ONNX file as it is, or a sequential model document with
 * its trained weights (JobSpec.initial_weights, a weights document or an exported ONNX model)
 * exported to ONNX on the fly, so the inference and evaluation executors run both through
 * onnxruntime.
 */
import { readFile } from "node:fs/promises";
import { JobInputError } from "./errors.js";
import { modelFormatOf } from "./media-types.js";
import { exportOnnx } from "./onnx-export.js";
import { parseSequentialModel, type SequentialModel } from "./sequential-model.js";
import { readWeightsFile } from "./weights.js";

/** A model ready for onnxruntime. */
export interface ModelSource {
  /** Serialized onnx.ModelProto. */
  readonly bytes: Uint8Array;
  /** The document, when the model came as one. */
  readonly sequential: SequentialModel | undefined;
}

/**
 * Loads the model at `modelPath` (media type `mediaType` or from its file name).
 * @throws JobInputError when the file is neither ONNX nor a valid document, or a document comes
 * without weights.
 */
export async function loadModelSource(
  modelPath: string,
  mediaType: string | undefined,
  weightsPath: string | undefined,
): Promise<ModelSource> {
  if (modelFormatOf(mediaType, modelPath) === "onnx") {
    return { bytes: await readFile(modelPath), sequential: undefined };
  }
  const sequential = parseSequentialModel(await readFile(modelPath, "utf8"));
  if (weightsPath === undefined) {
    throw new JobInputError(
      "a sequential model document needs trained weights (spec.initial_weights) to run; or submit the ONNX model",
    );
  }
  const weights = await readWeightsFile(weightsPath, sequential);
  const inputs = weights[0]?.inputs ?? 0;
  return { bytes: exportOnnx(sequential, inputs, weights), sequential };
}
