/**
 * Metrics of a model's outputs against targets, computed in float64 so they do not depend on the
 * batch size. Keys: "eval/loss" and "eval/accuracy" for classifiers, "eval/loss" (= mse),
 * "eval/mse" and "eval/mae" for regression, and "eval/samples".
 *
 * Classifier outputs may be probabilities or raw scores: when any row of a categorical output is
 * not a distribution (a value outside [0, 1] or a sum off 1 by more than 1e-3), every row gets a
 * softmax first; a binary output with a value outside [0, 1] gets a sigmoid. Probabilities are
 * clipped to [1e-7, 1 - 1e-7] before the logarithm (as Keras does).
 */
import { JobInputError } from "./errors.js";
import { type Hyperparameters, textParam } from "./hyperparameters.js";
import { LOSSES, type Loss, type SequentialModel } from "./sequential-model.js";

const EPSILON = 1e-7;

function clip(p: number): number {
  return Math.min(1 - EPSILON, Math.max(EPSILON, p));
}

/**
 * The loss an evaluation uses: hyperparameter "loss", else the document's, else the ONNX
 * metadata's "tessera.loss", else sparse_categorical_crossentropy when the output has several
 * values and the label one, else mse.
 * @throws JobInputError when hyperparameters.loss is not a known loss.
 */
export function evaluationLoss(
  params: Hyperparameters,
  metadata: ReadonlyMap<string, string>,
  sequential: SequentialModel | undefined,
  outputWidth: number,
  labelWidth: number,
): Loss {
  const asked = textParam(params, "loss");
  if (asked !== undefined) {
    if (!(LOSSES as readonly string[]).includes(asked)) {
      throw new JobInputError(`hyperparameters.loss must be one of ${LOSSES.join(", ")}`);
    }
    return asked as Loss;
  }
  if (sequential !== undefined) return sequential.loss;
  const recorded = metadata.get("tessera.loss");
  if (recorded !== undefined && (LOSSES as readonly string[]).includes(recorded))
    return recorded as Loss;
  return outputWidth > 1 && labelWidth === 1 ? "sparse_categorical_crossentropy" : "mse";
}

function isDistributionRows(values: ArrayLike<number>, rows: number, width: number): boolean {
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let c = 0; c < width; c++) {
      const v = values[r * width + c] ?? Number.NaN;
      if (!(v >= 0 && v <= 1)) return false;
      sum += v;
    }
    if (Math.abs(sum - 1) > 1e-3) return false;
  }
  return true;
}

function softmaxRow(values: ArrayLike<number>, offset: number, width: number): number[] {
  let max = Number.NEGATIVE_INFINITY;
  for (let c = 0; c < width; c++) max = Math.max(max, values[offset + c] ?? 0);
  const exps = Array.from({ length: width }, (_, c) => Math.exp((values[offset + c] ?? 0) - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

function argmax(values: ArrayLike<number>, offset: number, width: number): number {
  let best = 0;
  for (let c = 1; c < width; c++) {
    if ((values[offset + c] ?? 0) > (values[offset + best] ?? 0)) best = c;
  }
  return best;
}

/**
 * The metrics of `outputs` (rows × width) against `targets` (rows × width, see targets.ts) for
 * `loss`; see the module comment.
 */
export function evaluationMetrics(
  loss: Loss,
  outputs: ArrayLike<number>,
  targets: ArrayLike<number>,
  rows: number,
  width: number,
): Record<string, number> {
  if (rows === 0) throw new JobInputError("the dataset has no rows");
  if (loss === "mse") {
    let squared = 0;
    let absolute = 0;
    for (let i = 0; i < rows * width; i++) {
      const d = (outputs[i] ?? 0) - (targets[i] ?? 0);
      squared += d * d;
      absolute += Math.abs(d);
    }
    const mse = squared / (rows * width);
    return {
      "eval/loss": mse,
      "eval/mse": mse,
      "eval/mae": absolute / (rows * width),
      "eval/samples": rows,
    };
  }
  if (loss === "binary_crossentropy") {
    let probabilities = true;
    for (let i = 0; i < rows * width; i++) {
      const v = outputs[i] ?? Number.NaN;
      if (!(v >= 0 && v <= 1)) probabilities = false;
    }
    let total = 0;
    let correct = 0;
    for (let i = 0; i < rows * width; i++) {
      const raw = outputs[i] ?? 0;
      const p = probabilities ? raw : 1 / (1 + Math.exp(-raw));
      const t = targets[i] ?? 0;
      total += -(t * Math.log(clip(p)) + (1 - t) * Math.log(clip(1 - p)));
      if (p > 0.5 === t > 0.5) correct++;
    }
    return {
      "eval/loss": total / (rows * width),
      "eval/accuracy": correct / (rows * width),
      "eval/samples": rows,
    };
  }
  const probabilities = isDistributionRows(outputs, rows, width);
  let total = 0;
  let correct = 0;
  for (let r = 0; r < rows; r++) {
    const offset = r * width;
    const p = probabilities
      ? Array.from({ length: width }, (_, c) => outputs[offset + c] ?? 0)
      : softmaxRow(outputs, offset, width);
    let rowLoss = 0;
    for (let c = 0; c < width; c++) {
      const t = targets[offset + c] ?? 0;
      if (t !== 0) rowLoss -= t * Math.log(clip(p[c] ?? 0));
    }
    total += rowLoss;
    if (argmax(p, 0, width) === argmax(targets, offset, width)) correct++;
  }
  return { "eval/loss": total / rows, "eval/accuracy": correct / rows, "eval/samples": rows };
}
