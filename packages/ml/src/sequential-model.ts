/**
 * The declarative model document (media type application/vnd.tessera.sequential+json): a layer
 * list that nodes build and train without running any client code.
 *
 * ```json
 * {
 *   "format": "tessera.sequential/v1",
 *   "input_features": 4,
 *   "layers": [
 *     { "type": "dense", "units": 16, "activation": "relu" },
 *     { "type": "dropout", "rate": 0.1 },
 *     { "type": "dense", "units": 3, "activation": "softmax" }
 *   ],
 *   "loss": "sparse_categorical_crossentropy",
 *   "optimizer": { "name": "adam", "learning_rate": 0.01 }
 * }
 * ```
 *
 * - `format` (required) is exactly "tessera.sequential/v1".
 * - `input_features` (optional) is the number of input values per row; when set, the dataset's
 *   feature count must equal it, otherwise the dataset decides.
 * - `layers` (required, 1-64): `dense` with `units` (1-65536) and `activation` (relu, sigmoid,
 *   tanh, softmax, linear; default linear), or `dropout` with `rate` in [0, 1) (active in
 *   training only). The last layer must be dense.
 * - `loss` (required): sparse_categorical_crossentropy or categorical_crossentropy (the last
 *   layer must be softmax with at least 2 units), binary_crossentropy (the last layer must be
 *   sigmoid), or mse.
 * - `optimizer` (optional, default adam): `name` adam | sgd | rmsprop and `learning_rate` > 0
 *   (default 0.001, or 0.01 for sgd).
 *
 * Unknown keys are refused, so a misspelt setting is an error rather than silently ignored.
 */
import { JobInputError } from "./errors.js";

/** The `format` value of a version 1 document. */
export const SEQUENTIAL_FORMAT = "tessera.sequential/v1";

/** Activation functions of dense layers. */
export const ACTIVATIONS = ["relu", "sigmoid", "tanh", "softmax", "linear"] as const;
/** An activation function. */
export type Activation = (typeof ACTIVATIONS)[number];

/** Loss functions. */
export const LOSSES = [
  "sparse_categorical_crossentropy",
  "categorical_crossentropy",
  "binary_crossentropy",
  "mse",
] as const;
/** A loss function. */
export type Loss = (typeof LOSSES)[number];

/** Optimizers. */
export const OPTIMIZERS = ["adam", "sgd", "rmsprop"] as const;
/** An optimizer name. */
export type OptimizerName = (typeof OPTIMIZERS)[number];

/** A fully connected layer: output = activation(input · kernel + bias). */
export interface DenseLayer {
  readonly type: "dense";
  readonly units: number;
  readonly activation: Activation;
}

/** Drops each value with probability `rate` during training (and scales the rest by 1/(1-rate)). */
export interface DropoutLayer {
  readonly type: "dropout";
  readonly rate: number;
}

/** One layer of the list. */
export type Layer = DenseLayer | DropoutLayer;

/** The optimizer and its step size. */
export interface OptimizerSpec {
  readonly name: OptimizerName;
  readonly learningRate: number;
}

/** A validated model document. */
export interface SequentialModel {
  readonly format: typeof SEQUENTIAL_FORMAT;
  readonly inputFeatures: number | undefined;
  readonly layers: readonly Layer[];
  readonly loss: Loss;
  readonly optimizer: OptimizerSpec;
}

/** Most layers in a document. */
export const MAX_LAYERS = 64;
/** Most units in a dense layer. */
export const MAX_UNITS = 65_536;
/** Most input values per row. */
export const MAX_INPUT_FEATURES = 1 << 20;

/** Default learning rate of an optimizer. */
export function defaultLearningRate(name: OptimizerName): number {
  return name === "sgd" ? 0.01 : 0.001;
}

function fail(field: string, rule: string): never {
  throw new JobInputError(`model.${field} ${rule}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function onlyKeys(field: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      const where = field === "" ? `model.${key}` : `model.${field}.${key}`;
      throw new JobInputError(`${where} is not a known setting (allowed: ${allowed.join(", ")})`);
    }
  }
}

function positiveInteger(field: string, value: unknown, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) {
    fail(field, `must be an integer from 1 to ${max}`);
  }
  return value;
}

function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    fail(field, `must be one of ${allowed.join(", ")}`);
  }
  return value as T;
}

function parseLayer(index: number, value: unknown): Layer {
  const field = `layers[${index}]`;
  if (!isObject(value)) fail(field, "must be an object");
  if (value.type === "dense") {
    onlyKeys(field, value, ["type", "units", "activation"]);
    return {
      type: "dense",
      units: positiveInteger(`${field}.units`, value.units, MAX_UNITS),
      activation:
        value.activation === undefined
          ? "linear"
          : oneOf(`${field}.activation`, value.activation, ACTIVATIONS),
    };
  }
  if (value.type === "dropout") {
    onlyKeys(field, value, ["type", "rate"]);
    const rate = value.rate;
    if (typeof rate !== "number" || !Number.isFinite(rate) || rate < 0 || rate >= 1) {
      fail(`${field}.rate`, "must be a number in [0, 1)");
    }
    return { type: "dropout", rate };
  }
  return fail(`${field}.type`, "must be one of dense, dropout");
}

/**
 * Validates a parsed model document.
 * @throws JobInputError naming the field (e.g. `model.layers[1].units`) and the rule it broke.
 */
export function validateSequentialModel(value: unknown): SequentialModel {
  if (!isObject(value)) throw new JobInputError("model document must be a JSON object");
  onlyKeys("", value, ["format", "input_features", "layers", "loss", "optimizer"]);
  if (value.format !== SEQUENTIAL_FORMAT) fail("format", `must be "${SEQUENTIAL_FORMAT}"`);
  const inputFeatures =
    value.input_features === undefined
      ? undefined
      : positiveInteger("input_features", value.input_features, MAX_INPUT_FEATURES);
  if (!Array.isArray(value.layers) || value.layers.length === 0) {
    fail("layers", "must be a non-empty list");
  }
  if (value.layers.length > MAX_LAYERS) fail("layers", `must have at most ${MAX_LAYERS} layers`);
  const layers = value.layers.map((layer, index) => parseLayer(index, layer));
  const last = layers[layers.length - 1];
  if (last?.type !== "dense")
    fail(`layers[${layers.length - 1}]`, "must be a dense layer (the output)");
  const loss = oneOf("loss", value.loss, LOSSES);
  if (loss === "sparse_categorical_crossentropy" || loss === "categorical_crossentropy") {
    if (last.activation !== "softmax" || last.units < 2) {
      fail(
        `layers[${layers.length - 1}]`,
        `must be softmax with at least 2 units for loss ${loss}`,
      );
    }
  }
  if (loss === "binary_crossentropy" && last.activation !== "sigmoid") {
    fail(`layers[${layers.length - 1}].activation`, "must be sigmoid for loss binary_crossentropy");
  }
  let optimizer: OptimizerSpec = { name: "adam", learningRate: defaultLearningRate("adam") };
  if (value.optimizer !== undefined) {
    if (!isObject(value.optimizer)) fail("optimizer", "must be an object");
    onlyKeys("optimizer", value.optimizer, ["name", "learning_rate"]);
    const name = oneOf("optimizer.name", value.optimizer.name, OPTIMIZERS);
    const rate = value.optimizer.learning_rate ?? defaultLearningRate(name);
    if (typeof rate !== "number" || !Number.isFinite(rate) || rate <= 0 || rate > 10) {
      fail("optimizer.learning_rate", "must be a number > 0 and <= 10");
    }
    optimizer = { name, learningRate: rate };
  }
  return { format: SEQUENTIAL_FORMAT, inputFeatures, layers, loss, optimizer };
}

/**
 * Parses and validates a model document's text.
 * @throws JobInputError when it is not JSON or not a valid document.
 */
export function parseSequentialModel(text: string): SequentialModel {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new JobInputError("model document is not valid JSON");
  }
  return validateSequentialModel(value);
}

/** The document text of `model` (the inverse of {@link parseSequentialModel}). */
export function serializeSequentialModel(model: SequentialModel): string {
  return JSON.stringify({
    format: model.format,
    ...(model.inputFeatures === undefined ? {} : { input_features: model.inputFeatures }),
    layers: model.layers,
    loss: model.loss,
    optimizer: { name: model.optimizer.name, learning_rate: model.optimizer.learningRate },
  });
}

/** The dense layers of `model`, in order. */
export function denseLayers(model: SequentialModel): DenseLayer[] {
  return model.layers.filter((layer): layer is DenseLayer => layer.type === "dense");
}

/** Whether the model's loss is a classification loss (accuracy is reported). */
export function isClassifier(loss: Loss): boolean {
  return loss !== "mse";
}
