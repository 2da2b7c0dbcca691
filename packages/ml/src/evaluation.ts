/**
 * The evaluation executor (runtime "onnxruntime"): runs a model over a labelled dataset and
 * writes "metrics" (application/json) with the metrics of eval-metrics.ts ("eval/loss",
 * "eval/accuracy" for classifiers; "eval/mse", "eval/mae" for regression; "eval/samples").
 *
 * Hyperparameters: "label_column", "feature_columns" as for every job; "loss" to choose the
 * metric family (default: the model's own, see {@link evaluationLoss}); "output_name" to pick the
 * output of a model with several (default the first).
 */
import type { Dataset } from "./dataset.js";
import { columnChoiceOf, loadDataset } from "./dataset.js";
import { JobInputError } from "./errors.js";
import { evaluationLoss, evaluationMetrics } from "./eval-metrics.js";
import { writeWorkFile } from "./files.js";
import { type Hyperparameters, textParam } from "./hyperparameters.js";
import { DEFAULT_INFERENCE_BATCH_SIZE } from "./inference.js";
import { type JobRunContext, type JobRunInput, type JobRunOutput, report } from "./job-run.js";
import { JSON_MEDIA_TYPE } from "./media-types.js";
import { loadModelSource, type ModelSource } from "./model-source.js";
import { checkInputWidth, openOnnxModel, runBatches } from "./onnx-runner.js";
import type { Loss } from "./sequential-model.js";
import { targetMatrix } from "./targets.js";

/** What an evaluation found. */
export interface EvaluationResult {
  /** The loss (metric family) used. */
  readonly loss: Loss;
  /** The output evaluated. */
  readonly outputName: string;
  /** The metrics. */
  readonly metrics: Record<string, number>;
}

/**
 * Evaluates `source` on `dataset` (which must have labels) in batches of `batchSize`, calling
 * `onRows` with the rows done after each batch.
 */
export async function evaluateModel(
  source: ModelSource,
  dataset: Dataset,
  params: Hyperparameters,
  batchSize: number,
  signal: AbortSignal,
  onRows?: (done: number) => void,
): Promise<EvaluationResult> {
  const model = await openOnnxModel(source.bytes);
  try {
    checkInputWidth(model, dataset.featureCount, dataset.featureNames);
    const outputName = textParam(params, "output_name") ?? model.outputNames[0];
    if (outputName === undefined || !model.outputNames.includes(outputName)) {
      throw new JobInputError(
        `hyperparameters.output_name must be one of the model's outputs: ${model.outputNames.join(", ")}`,
      );
    }
    let values: Float64Array | undefined;
    let width = 0;
    for await (const batch of runBatches(
      model,
      dataset.features,
      dataset.rowCount,
      dataset.featureCount,
      batchSize,
      signal,
    )) {
      const output = batch.outputs.get(outputName);
      if (output === undefined)
        throw new JobInputError(`the model did not produce output ${outputName}`);
      width = output.width;
      values ??= new Float64Array(dataset.rowCount * width);
      for (let i = 0; i < batch.count * width; i++)
        values[batch.start * width + i] = output.values[i] ?? 0;
      onRows?.(batch.start + batch.count);
    }
    const loss = evaluationLoss(
      params,
      model.metadata,
      source.sequential,
      width,
      dataset.labelWidth,
    );
    const targets = targetMatrix(loss, dataset, width);
    return {
      loss,
      outputName,
      metrics: evaluationMetrics(
        loss,
        values ?? new Float64Array(0),
        targets,
        dataset.rowCount,
        width,
      ),
    };
  } finally {
    await model.close();
  }
}

/** Runs an EVALUATION job; see the module comment. */
export async function runEvaluation(input: JobRunInput, ctx: JobRunContext): Promise<JobRunOutput> {
  if (input.modelPath === undefined)
    throw new JobInputError("an evaluation job needs a model (spec.model)");
  if (input.datasetPath === undefined)
    throw new JobInputError("an evaluation job needs a dataset (spec.dataset)");
  const params = input.spec.hyperparameters;
  const source = await loadModelSource(
    input.modelPath,
    input.modelMediaType,
    input.initialWeightsPath,
  );
  const { dataset } = await loadDataset(
    input.datasetPath,
    input.datasetMediaType,
    columnChoiceOf(params, "required"),
  );
  const batchSize = input.spec.batchSize || DEFAULT_INFERENCE_BATCH_SIZE;
  report(ctx, {
    progress: 0,
    samplesProcessed: 0,
    totalSamples: dataset.rowCount,
    log: {
      level: "info",
      message: `evaluating on ${dataset.rowCount} rows × ${dataset.featureCount} features`,
    },
  });
  let lastPercent = -1;
  const result = await evaluateModel(source, dataset, params, batchSize, ctx.signal, (done) => {
    const percent = Math.floor((done * 100) / dataset.rowCount);
    if (percent === lastPercent) return;
    lastPercent = percent;
    // The metrics come after the last batch; keep the bar just short of done until then.
    report(ctx, {
      progress: (0.99 * done) / dataset.rowCount,
      samplesProcessed: done,
      totalSamples: dataset.rowCount,
    });
  });
  report(ctx, {
    progress: 1,
    metrics: result.metrics,
    samplesProcessed: dataset.rowCount,
    totalSamples: dataset.rowCount,
  });
  const metricsDoc = {
    job_type: "evaluation",
    loss: result.loss,
    output: result.outputName,
    feature_columns: dataset.featureColumns,
    label_columns: dataset.labelColumns,
    final: result.metrics,
  };
  return {
    artifacts: [
      {
        name: "metrics",
        path: await writeWorkFile(
          ctx.workDir,
          "metrics.json",
          `${JSON.stringify(metricsDoc, null, 2)}\n`,
        ),
        mediaType: JSON_MEDIA_TYPE,
      },
    ],
    finalMetrics: result.metrics,
  };
}
