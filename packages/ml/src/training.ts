/**
 * The training executor (runtime "tfjs"): trains a sequential model document on a labelled
 * dataset with tfjs's pure-JS CPU backend and writes
 * - "model" (application/onnx): the trained network exported to ONNX (see onnx-export.ts),
 * - "weights" (application/vnd.tessera.weights+json, see weights.ts),
 * - "metrics" (application/json): settings, per-epoch history and final metrics.
 *
 * Settings: JobSpec.epochs (0 → 1, at most 10000), JobSpec.batch_size (0 → 32); hyperparameters
 * "learning_rate" and "optimizer" override the document's optimizer; "seed" (integer, default 0)
 * seeds the validation split, the per-epoch shuffles, weight initialisation and dropout, so the
 * same job on the same data gives byte-identical artifacts; "validation_split" in [0, 1)
 * (default 0) holds out that fraction of rows (chosen by a seeded shuffle, so ordered datasets
 * still get a representative split) for "test/loss" and "test/accuracy" after each epoch.
 * Reports "train/loss" (and "train/accuracy" for classifiers) as the running mean over each
 * epoch's batches. Stops between batches when the context's signal aborts.
 */

import { readFile } from "node:fs/promises";
import * as tf from "@tensorflow/tfjs";
import { columnChoiceOf, loadDataset } from "./dataset.js";
import { JobInputError } from "./errors.js";
import { writeWorkFile } from "./files.js";
import { numberParam, seedParam, textParam } from "./hyperparameters.js";
import {
  checkpoint,
  type JobRunContext,
  type JobRunInput,
  type JobRunOutput,
  report,
} from "./job-run.js";
import {
  JSON_MEDIA_TYPE,
  modelFormatOf,
  ONNX_MEDIA_TYPE,
  WEIGHTS_MEDIA_TYPE,
} from "./media-types.js";
import { exportOnnx } from "./onnx-export.js";
import { createRandom } from "./random.js";
import {
  defaultLearningRate,
  denseLayers,
  isClassifier,
  OPTIMIZERS,
  type OptimizerName,
  parseSequentialModel,
  type SequentialModel,
} from "./sequential-model.js";
import { targetMatrix } from "./targets.js";
import {
  correctCount,
  createNetwork,
  createOptimizer,
  ensureCpuBackend,
  lossOf,
  type TfNetwork,
} from "./tf-network.js";
import { checkWeightsFit, readWeightsFile, serializeWeights } from "./weights.js";

/** Most epochs a job may ask for. */
export const MAX_EPOCHS = 10_000;
/** Batch size when the spec leaves it 0. */
export const DEFAULT_TRAINING_BATCH_SIZE = 32;

/** Training settings after defaults and hyperparameter overrides. */
export interface TrainingSettings {
  readonly epochs: number;
  readonly batchSize: number;
  readonly seed: number;
  readonly validationSplit: number;
  readonly optimizer: OptimizerName;
  readonly learningRate: number;
}

/** The settings of `input` for `model`. */
export function trainingSettings(input: JobRunInput, model: SequentialModel): TrainingSettings {
  const params = input.spec.hyperparameters;
  const epochs = input.spec.epochs === 0 ? 1 : input.spec.epochs;
  if (epochs > MAX_EPOCHS)
    throw new JobInputError(`epochs must be at most ${MAX_EPOCHS}, got ${epochs}`);
  const optimizerText = textParam(params, "optimizer");
  if (optimizerText !== undefined && !(OPTIMIZERS as readonly string[]).includes(optimizerText)) {
    throw new JobInputError(`hyperparameters.optimizer must be one of ${OPTIMIZERS.join(", ")}`);
  }
  const optimizer = (optimizerText as OptimizerName | undefined) ?? model.optimizer.name;
  const learningRate =
    numberParam(params, "learning_rate", { min: 0, minExclusive: true, max: 10 }) ??
    (optimizer === model.optimizer.name
      ? model.optimizer.learningRate
      : defaultLearningRate(optimizer));
  return {
    epochs,
    batchSize: input.spec.batchSize === 0 ? DEFAULT_TRAINING_BATCH_SIZE : input.spec.batchSize,
    seed: seedParam(params),
    validationSplit:
      numberParam(params, "validation_split", { min: 0, max: 1, maxExclusive: true }) ?? 0,
    optimizer,
    learningRate,
  };
}

function gatherRows(
  source: ArrayLike<number>,
  width: number,
  indices: readonly number[],
): Float32Array {
  const out = new Float32Array(indices.length * width);
  indices.forEach((row, i) => {
    for (let c = 0; c < width; c++) out[i * width + c] = source[row * width + c] ?? 0;
  });
  return out;
}

/** Loss and accuracy of `network` over the rows `indices`, without dropout. */
function evaluateRows(
  network: TfNetwork,
  model: SequentialModel,
  features: Float32Array,
  featureCount: number,
  targets: Float64Array,
  units: number,
  indices: readonly number[],
): { loss: number; accuracy: number | undefined } {
  return tf.tidy(() => {
    const x = tf.tensor2d(gatherRows(features, featureCount, indices), [
      indices.length,
      featureCount,
    ]);
    const y = tf.tensor2d(gatherRows(targets, units, indices), [indices.length, units]);
    const { logits, output } = network.forward(x);
    const loss = lossOf(model.loss, logits, output, y).dataSync()[0] ?? Number.NaN;
    const correct = correctCount(model.loss, output, y)?.dataSync()[0];
    const perRow = model.loss === "binary_crossentropy" ? units : 1;
    return {
      loss,
      accuracy: correct === undefined ? undefined : correct / (indices.length * perRow),
    };
  });
}

/** Runs a TRAINING job; see the module comment. */
export async function runTraining(input: JobRunInput, ctx: JobRunContext): Promise<JobRunOutput> {
  if (input.modelPath === undefined)
    throw new JobInputError("a training job needs a model (spec.model)");
  if (input.datasetPath === undefined)
    throw new JobInputError("a training job needs a dataset (spec.dataset)");
  if (modelFormatOf(input.modelMediaType, input.modelPath) !== "sequential") {
    throw new JobInputError(
      "training needs a declarative model document (application/vnd.tessera.sequential+json); ONNX models are inference-only",
    );
  }
  const model = parseSequentialModel(await readFile(input.modelPath, "utf8"));
  const settings = trainingSettings(input, model);
  const { dataset } = await loadDataset(
    input.datasetPath,
    input.datasetMediaType,
    columnChoiceOf(input.spec.hyperparameters, "required"),
  );
  const featureCount = dataset.featureCount;
  if (model.inputFeatures !== undefined && model.inputFeatures !== featureCount) {
    throw new JobInputError(
      `model.input_features is ${model.inputFeatures}, the dataset has ${featureCount} feature values per row`,
    );
  }
  const dense = denseLayers(model);
  const units = dense[dense.length - 1]?.units ?? 0;
  const targets = targetMatrix(model.loss, dataset, units);
  const initialWeights =
    input.initialWeightsPath === undefined
      ? undefined
      : await readWeightsFile(input.initialWeightsPath, model);
  if (initialWeights !== undefined) checkWeightsFit(model, featureCount, initialWeights);

  const order = createRandom(`${settings.seed}:split`).shuffle(
    Array.from({ length: dataset.rowCount }, (_, i) => i),
  );
  const validationCount = Math.floor(dataset.rowCount * settings.validationSplit);
  const trainIndices = order.slice(0, dataset.rowCount - validationCount);
  const validationIndices = order.slice(dataset.rowCount - validationCount);
  if (trainIndices.length === 0)
    throw new JobInputError("validation_split leaves no training rows");
  // Keep the training rows in file order before the per-epoch shuffles, as without a split.
  trainIndices.sort((a, b) => a - b);

  await ensureCpuBackend();
  const network = createNetwork(
    model,
    featureCount,
    initialWeights === undefined
      ? { random: createRandom(`${settings.seed}:init`) }
      : { weights: initialWeights },
  );
  const optimizer = createOptimizer(settings.optimizer, settings.learningRate);
  const shuffle = createRandom(`${settings.seed}:shuffle`);
  const dropout = createRandom(`${settings.seed}:dropout`);
  const classifier = isClassifier(model.loss);
  const perRow = model.loss === "binary_crossentropy" ? units : 1;
  const batchesPerEpoch = Math.ceil(trainIndices.length / settings.batchSize);
  const totalSamples = trainIndices.length * settings.epochs;
  const history: Record<string, number>[] = [];
  let latest: Record<string, number> = {};
  report(ctx, {
    progress: 0,
    totalSamples,
    samplesProcessed: 0,
    log: {
      level: "info",
      message: `training on ${trainIndices.length} rows × ${featureCount} features (${validationCount} held out), ${settings.epochs} epochs, batch ${settings.batchSize}, ${settings.optimizer} lr ${settings.learningRate}`,
    },
  });
  try {
    for (let epoch = 1; epoch <= settings.epochs; epoch++) {
      const epochOrder = shuffle.shuffle([...trainIndices]);
      let lossSum = 0;
      let correctSum = 0;
      let seen = 0;
      let lastDecile = 0;
      for (let b = 0; b < batchesPerEpoch; b++) {
        const batch = epochOrder.slice(b * settings.batchSize, (b + 1) * settings.batchSize);
        const xValues = gatherRows(dataset.features, featureCount, batch);
        const yValues = gatherRows(targets, units, batch);
        let correct = 0;
        const cost = optimizer.minimize(
          () => {
            const x = tf.tensor2d(xValues, [batch.length, featureCount]);
            const y = tf.tensor2d(yValues, [batch.length, units]);
            const { logits, output } = network.forward(x, dropout);
            const count = correctCount(model.loss, output, y);
            if (count !== undefined) correct = count.dataSync()[0] ?? 0;
            return lossOf(model.loss, logits, output, y);
          },
          true,
          [...network.variables],
        );
        const batchLoss = cost?.dataSync()[0] ?? Number.NaN;
        cost?.dispose();
        if (!Number.isFinite(batchLoss)) {
          throw new JobInputError(
            `training diverged in epoch ${epoch} (loss is not finite); lower the learning rate or normalize the features`,
          );
        }
        lossSum += batchLoss * batch.length;
        correctSum += correct;
        seen += batch.length;
        await checkpoint(ctx.signal);
        const decile = Math.floor(((b + 1) * 10) / batchesPerEpoch);
        if (batchesPerEpoch >= 10 && decile !== lastDecile && b + 1 < batchesPerEpoch) {
          lastDecile = decile;
          const done = (epoch - 1) * trainIndices.length + seen;
          report(ctx, {
            progress: done / totalSamples,
            epoch,
            samplesProcessed: done,
            totalSamples,
          });
        }
      }
      const metrics: Record<string, number> = { "train/loss": lossSum / seen };
      if (classifier) metrics["train/accuracy"] = correctSum / (seen * perRow);
      if (validationIndices.length > 0) {
        const held = evaluateRows(
          network,
          model,
          dataset.features,
          featureCount,
          targets,
          units,
          validationIndices,
        );
        metrics["test/loss"] = held.loss;
        if (held.accuracy !== undefined) metrics["test/accuracy"] = held.accuracy;
      }
      history.push({ epoch, ...metrics });
      latest = metrics;
      report(ctx, {
        progress: epoch / settings.epochs,
        epoch,
        metrics,
        samplesProcessed: epoch * trainIndices.length,
        totalSamples,
      });
    }
    const weights = network.weights();
    const finalMetrics: Record<string, number> = {
      ...latest,
      "train/samples": trainIndices.length,
      ...(validationIndices.length > 0 ? { "test/samples": validationIndices.length } : {}),
    };
    const onnxBytes = exportOnnx(model, featureCount, weights, {
      featureNames: dataset.featureNames,
    });
    const metricsDoc = {
      job_type: "training",
      loss: model.loss,
      optimizer: settings.optimizer,
      learning_rate: settings.learningRate,
      epochs: settings.epochs,
      batch_size: settings.batchSize,
      seed: settings.seed,
      validation_split: settings.validationSplit,
      feature_columns: dataset.featureColumns,
      features: dataset.featureNames,
      label_columns: dataset.labelColumns,
      history,
      final: finalMetrics,
    };
    const artifacts = [
      {
        name: "model",
        path: await writeWorkFile(ctx.workDir, "model.onnx", onnxBytes),
        mediaType: ONNX_MEDIA_TYPE,
      },
      {
        name: "weights",
        path: await writeWorkFile(ctx.workDir, "weights.json", serializeWeights(weights)),
        mediaType: WEIGHTS_MEDIA_TYPE,
      },
      {
        name: "metrics",
        path: await writeWorkFile(
          ctx.workDir,
          "metrics.json",
          `${JSON.stringify(metricsDoc, null, 2)}\n`,
        ),
        mediaType: JSON_MEDIA_TYPE,
      },
    ];
    return { artifacts, finalMetrics };
  } finally {
    network.dispose();
    optimizer.dispose();
  }
}
