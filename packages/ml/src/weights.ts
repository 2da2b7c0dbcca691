/**
 * The "weights" artifact of a training job (media type application/vnd.tessera.weights+json):
 *
 * ```json
 * {"format":"tessera.weights/v1",
 *  "layers":[{"inputs":4,"units":16,"kernel":[...64 numbers],"bias":[...16 numbers]}, ...]}
 * ```
 *
 * One entry per dense layer of the model document, in order (dropout layers have no weights).
 * `kernel` is row-major inputs × units: kernel[i * units + j] connects input i to unit j, so a
 * layer computes output[j] = activation(bias[j] + Σ_i input[i] · kernel[i * units + j]). Values are
 * float32 numbers written in JavaScript's shortest round-trip form, so reading them back gives the
 * exact trained float32 values and identical training runs give identical bytes.
 *
 * Training also accepts initial weights as an ONNX model exported by this package (initializers
 * "dense_<i>.kernel" and "dense_<i>.bias"), so a federated round can start from the previous
 * round's "model" artifact.
 */
import { readFile } from "node:fs/promises";
import { JobInputError } from "./errors.js";
import { type ITensorProto, int64ToNumber, type ModelProto, onnx } from "./onnx-proto.js";
import { denseLayers, type SequentialModel } from "./sequential-model.js";

/** The `format` value of a weights document. */
export const WEIGHTS_FORMAT = "tessera.weights/v1";

/** Weights of one dense layer. */
export interface DenseWeights {
  /** Inputs of the layer. */
  readonly inputs: number;
  /** Outputs of the layer. */
  readonly units: number;
  /** Row-major inputs × units. */
  readonly kernel: Float32Array;
  /** One per unit. */
  readonly bias: Float32Array;
}

/** Weights of every dense layer of a model, in order. */
export type NetworkWeights = readonly DenseWeights[];

/** The JSON text of `weights` (see the module comment for the format). */
export function serializeWeights(weights: NetworkWeights): string {
  return JSON.stringify({
    format: WEIGHTS_FORMAT,
    layers: weights.map((layer) => ({
      inputs: layer.inputs,
      units: layer.units,
      kernel: Array.from(layer.kernel),
      bias: Array.from(layer.bias),
    })),
  });
}

function floats(field: string, value: unknown, length: number): Float32Array {
  if (!Array.isArray(value) || value.length !== length) {
    throw new JobInputError(`weights.${field} must be a list of ${length} numbers`);
  }
  const out = new Float32Array(length);
  value.forEach((item, index) => {
    if (typeof item !== "number" || !Number.isFinite(item)) {
      throw new JobInputError(`weights.${field}[${index}] must be a finite number`);
    }
    out[index] = item;
  });
  return out;
}

/**
 * Parses a weights document.
 * @throws JobInputError naming the field when it is not a valid document.
 */
export function parseWeights(text: string): NetworkWeights {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new JobInputError("weights document is not valid JSON");
  }
  const doc = value as { format?: unknown; layers?: unknown };
  if (doc === null || typeof doc !== "object" || doc.format !== WEIGHTS_FORMAT) {
    throw new JobInputError(`weights.format must be "${WEIGHTS_FORMAT}"`);
  }
  if (!Array.isArray(doc.layers)) throw new JobInputError("weights.layers must be a list");
  return doc.layers.map((layer: unknown, index: number): DenseWeights => {
    const entry = (layer ?? {}) as Record<string, unknown>;
    const inputs = entry.inputs;
    const units = entry.units;
    if (typeof inputs !== "number" || !Number.isInteger(inputs) || inputs < 1) {
      throw new JobInputError(`weights.layers[${index}].inputs must be a positive integer`);
    }
    if (typeof units !== "number" || !Number.isInteger(units) || units < 1) {
      throw new JobInputError(`weights.layers[${index}].units must be a positive integer`);
    }
    return {
      inputs,
      units,
      kernel: floats(`layers[${index}].kernel`, entry.kernel, inputs * units),
      bias: floats(`layers[${index}].bias`, entry.bias, units),
    };
  });
}

/** Name of the ONNX initializer of dense layer `index`'s kernel or bias. */
export function initializerName(index: number, part: "kernel" | "bias"): string {
  return `dense_${index}.${part}`;
}

function tensorFloats(tensor: ITensorProto): Float32Array {
  if (tensor.dataType !== onnx.TensorProto.DataType.FLOAT) {
    throw new JobInputError(`initializer ${tensor.name ?? ""} is not float32`);
  }
  const count = (tensor.dims ?? []).reduce<number>((n, d) => n * int64ToNumber(d), 1);
  if (tensor.rawData && tensor.rawData.length > 0) {
    if (tensor.rawData.length !== count * 4) {
      throw new JobInputError(`initializer ${tensor.name ?? ""} has the wrong size`);
    }
    const view = new DataView(
      tensor.rawData.buffer,
      tensor.rawData.byteOffset,
      tensor.rawData.length,
    );
    return Float32Array.from({ length: count }, (_, i) => view.getFloat32(i * 4, true));
  }
  const data = tensor.floatData ?? [];
  if (data.length !== count)
    throw new JobInputError(`initializer ${tensor.name ?? ""} has the wrong size`);
  return Float32Array.from(data);
}

/**
 * The dense weights inside an ONNX model exported by this package, for a model with
 * `layerCount` dense layers.
 * @throws JobInputError when the bytes are not ONNX or an initializer is missing or malformed.
 */
export function weightsFromOnnx(bytes: Uint8Array, layerCount: number): NetworkWeights {
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch {
    throw new JobInputError("initial weights are neither a weights document nor an ONNX model");
  }
  const byName = new Map((model.graph?.initializer ?? []).map((t) => [t.name ?? "", t]));
  const layers: DenseWeights[] = [];
  for (let i = 0; i < layerCount; i++) {
    const kernel = byName.get(initializerName(i, "kernel"));
    const bias = byName.get(initializerName(i, "bias"));
    if (!kernel || !bias) {
      throw new JobInputError(
        `initial weights (ONNX) lack initializer ${initializerName(i, kernel ? "bias" : "kernel")}`,
      );
    }
    const dims = (kernel.dims ?? []).map((d) => int64ToNumber(d));
    const [inputs, units] = dims;
    if (dims.length !== 2 || inputs === undefined || units === undefined) {
      throw new JobInputError(`initializer ${initializerName(i, "kernel")} must be 2-dimensional`);
    }
    const biasValues = tensorFloats(bias);
    if (biasValues.length !== units) {
      throw new JobInputError(
        `initializer ${initializerName(i, "bias")} must have ${units} values`,
      );
    }
    layers.push({ inputs, units, kernel: tensorFloats(kernel), bias: biasValues });
  }
  return layers;
}

/**
 * Reads initial weights from `path`: a weights document (first non-blank byte "{") or an ONNX
 * model exported by this package.
 */
export async function readWeightsFile(
  path: string,
  model: SequentialModel,
): Promise<NetworkWeights> {
  const bytes = await readFile(path);
  const first = bytes.find(
    (byte) => byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09,
  );
  if (first === 0x7b) return parseWeights(bytes.toString("utf8"));
  return weightsFromOnnx(bytes, denseLayers(model).length);
}

/**
 * Checks that `weights` fit `model` with `inputFeatures` inputs.
 * @throws JobInputError naming the first layer whose shape differs.
 */
export function checkWeightsFit(
  model: SequentialModel,
  inputFeatures: number,
  weights: NetworkWeights,
): void {
  const dense = denseLayers(model);
  if (weights.length !== dense.length) {
    throw new JobInputError(
      `weights have ${weights.length} dense layers, the model has ${dense.length}`,
    );
  }
  let inputs = inputFeatures;
  dense.forEach((layer, index) => {
    const entry = weights[index];
    if (entry === undefined || entry.inputs !== inputs || entry.units !== layer.units) {
      throw new JobInputError(
        `weights.layers[${index}] is ${entry?.inputs}×${entry?.units}, the model needs ${inputs}×${layer.units}`,
      );
    }
    inputs = layer.units;
  });
}
