/**
 * A sequential model as a tfjs computation (pure-JS CPU backend): one kernel and bias variable per
 * dense layer, a forward pass with optional dropout, the document's loss and accuracy. Weight
 * initialisation (Glorot uniform kernels, zero biases) and dropout masks come from a seeded
 * {@link Random}, so training is reproducible.
 */
import * as tf from "@tensorflow/tfjs";
import { JobInputError } from "./errors.js";
import type { Random } from "./random.js";
import type { Activation, Loss, SequentialModel } from "./sequential-model.js";
import type { DenseWeights, NetworkWeights } from "./weights.js";

/** Most trainable parameters a network may have (guards a node's memory). */
export const MAX_PARAMETERS = 50_000_000;

let backendReady: Promise<void> | undefined;

/** Selects tfjs's pure-JS CPU backend (once per process). */
export function ensureCpuBackend(): Promise<void> {
  backendReady ??= (async () => {
    const ok = await tf.setBackend("cpu");
    if (!ok) throw new Error("the tfjs CPU backend is not available");
    await tf.ready();
    // The CPU backend prints a "use tfjs-node" banner on its first tensor unless PROD is set;
    // tfjs-node is not an option here, so take the first write quietly and restore the flag.
    const env = tf.env();
    const prod = env.getBool("PROD");
    env.set("PROD", true);
    tf.tensor1d([0]).dispose();
    env.set("PROD", prod);
  })();
  return backendReady;
}

type NetworkLayer =
  | { kind: "dense"; kernel: tf.Variable; bias: tf.Variable; activation: Activation; units: number }
  | { kind: "dropout"; rate: number };

/** A built network. */
export interface TfNetwork {
  /** The trainable variables. */
  readonly variables: readonly tf.Variable[];
  /**
   * The forward pass: `logits` is the last dense layer before its activation, `output` after it.
   * With `dropout` (training), dropout layers draw their masks from it; without, they pass through.
   */
  forward(x: tf.Tensor2D, dropout?: Random): { logits: tf.Tensor2D; output: tf.Tensor2D };
  /** The current weights, copied out of the variables. */
  weights(): NetworkWeights;
  /** Frees the variables. */
  dispose(): void;
}

function activate(x: tf.Tensor2D, activation: Activation): tf.Tensor2D {
  switch (activation) {
    case "relu":
      return tf.relu(x);
    case "sigmoid":
      return tf.sigmoid(x);
    case "tanh":
      return tf.tanh(x);
    case "softmax":
      return tf.softmax(x);
    case "linear":
      return x;
  }
}

function glorotUniform(inputs: number, units: number, random: Random): Float32Array {
  const limit = Math.sqrt(6 / (inputs + units));
  return Float32Array.from({ length: inputs * units }, () => (random.next() * 2 - 1) * limit);
}

/**
 * Builds `model` for `inputFeatures` inputs, starting from `initial` weights or, without them,
 * from weights drawn from `random`.
 * @throws JobInputError when the network would exceed {@link MAX_PARAMETERS}.
 */
export function createNetwork(
  model: SequentialModel,
  inputFeatures: number,
  init: { readonly weights: NetworkWeights } | { readonly random: Random },
): TfNetwork {
  let parameters = 0;
  let width = inputFeatures;
  for (const layer of model.layers) {
    if (layer.type !== "dense") continue;
    parameters += width * layer.units + layer.units;
    width = layer.units;
  }
  if (parameters > MAX_PARAMETERS) {
    throw new JobInputError(`the model has ${parameters} parameters, more than ${MAX_PARAMETERS}`);
  }
  const layers: NetworkLayer[] = [];
  let inputs = inputFeatures;
  let denseIndex = 0;
  for (const layer of model.layers) {
    if (layer.type === "dropout") {
      layers.push({ kind: "dropout", rate: layer.rate });
      continue;
    }
    const given = "weights" in init ? init.weights[denseIndex] : undefined;
    const kernelValues =
      given?.kernel ?? glorotUniform(inputs, layer.units, (init as { random: Random }).random);
    const biasValues = given?.bias ?? new Float32Array(layer.units);
    layers.push({
      kind: "dense",
      // Unnamed: tfjs variable names are global, and jobs may train side by side.
      kernel: tf.tidy(() => tf.variable(tf.tensor2d(kernelValues, [inputs, layer.units]), true)),
      bias: tf.tidy(() => tf.variable(tf.tensor1d(biasValues), true)),
      activation: layer.activation,
      units: layer.units,
    });
    inputs = layer.units;
    denseIndex++;
  }
  const variables = layers.flatMap((layer) =>
    layer.kind === "dense" ? [layer.kernel, layer.bias] : [],
  );
  return {
    variables,
    forward(x, dropout) {
      let current: tf.Tensor2D = x;
      let logits: tf.Tensor2D = x;
      for (const layer of layers) {
        if (layer.kind === "dropout") {
          if (dropout === undefined || layer.rate === 0) continue;
          const [rows, cols] = current.shape;
          const keep = 1 / (1 - layer.rate);
          const mask = Float32Array.from({ length: rows * cols }, () =>
            dropout.next() < layer.rate ? 0 : keep,
          );
          current = tf.mul(current, tf.tensor2d(mask, [rows, cols]));
          continue;
        }
        logits = tf.add(tf.matMul(current, layer.kernel), layer.bias);
        current = activate(logits, layer.activation);
      }
      return { logits, output: current };
    },
    weights() {
      const out: DenseWeights[] = [];
      for (const layer of layers) {
        if (layer.kind !== "dense") continue;
        const [rows] = layer.kernel.shape;
        out.push({
          inputs: rows ?? 0,
          units: layer.units,
          kernel: Float32Array.from(layer.kernel.dataSync()),
          bias: Float32Array.from(layer.bias.dataSync()),
        });
      }
      return out;
    },
    dispose() {
      for (const variable of variables) variable.dispose();
    },
  };
}

/**
 * The mean loss of a batch. `targets` has the output's shape: one-hot rows (or distributions) for
 * the cross-entropies, values for mse. Cross-entropies are computed from the logits (softmax or
 * sigmoid is the last activation, checked by the document's validation), which is numerically
 * stable.
 */
export function lossOf(
  loss: Loss,
  logits: tf.Tensor2D,
  output: tf.Tensor2D,
  targets: tf.Tensor2D,
): tf.Scalar {
  switch (loss) {
    case "sparse_categorical_crossentropy":
    case "categorical_crossentropy":
      return tf.neg(tf.mean(tf.sum(tf.mul(targets, tf.logSoftmax(logits)), -1))) as tf.Scalar;
    case "binary_crossentropy":
      return tf.mean(
        tf.add(
          tf.sub(tf.relu(logits), tf.mul(logits, targets)),
          tf.log1p(tf.exp(tf.neg(tf.abs(logits)))),
        ),
      );
    case "mse":
      return tf.mean(tf.squaredDifference(output, targets));
  }
}

/**
 * How many predictions of a batch are right: rows whose argmax matches the target's argmax
 * (categorical losses), or elements on the same side of 0.5 (binary); undefined for mse.
 */
export function correctCount(
  loss: Loss,
  output: tf.Tensor2D,
  targets: tf.Tensor2D,
): tf.Scalar | undefined {
  switch (loss) {
    case "sparse_categorical_crossentropy":
    case "categorical_crossentropy":
      return tf.sum(
        tf.cast(tf.equal(tf.argMax(output, -1), tf.argMax(targets, -1)), "float32"),
      ) as tf.Scalar;
    case "binary_crossentropy":
      return tf.sum(
        tf.cast(tf.equal(tf.greater(output, 0.5), tf.greater(targets, 0.5)), "float32"),
      ) as tf.Scalar;
    case "mse":
      return undefined;
  }
}

/** The optimizer of a document's settings. */
export function createOptimizer(
  name: "adam" | "sgd" | "rmsprop",
  learningRate: number,
): tf.Optimizer {
  switch (name) {
    case "adam":
      return tf.train.adam(learningRate);
    case "sgd":
      return tf.train.sgd(learningRate);
    case "rmsprop":
      return tf.train.rmsprop(learningRate);
  }
}

/** Runs the network over `features` (rowCount × width) without dropout; returns the outputs row-major. */
export function predict(
  network: TfNetwork,
  features: Float32Array,
  rowCount: number,
  width: number,
): Float32Array {
  return tf.tidy(() => {
    const { output } = network.forward(tf.tensor2d(features, [rowCount, width]));
    return Float32Array.from(output.dataSync());
  });
}
