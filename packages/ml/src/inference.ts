/**
 * The inference executor (runtime "onnxruntime"): runs an ONNX model (or a sequential document
 * with its weights, see model-source.ts) over a dataset in batches and writes
 * - "predictions" (application/x-ndjson): one line per dataset row, in order, an object with one
 *   key per model output: {"output":[0.01,0.98,0.01]};
 * - "metrics" (application/json): rows, batch size, input and outputs.
 *
 * Features: hyperparameter "feature_columns", default every numeric column except the label
 * column(s) ("label_column", default "label"), which are ignored. Batch size: JobSpec.batch_size,
 * default 256, or the model's fixed batch. Final metrics: "eval/samples".
 */
import { mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import { columnChoiceOf, loadDataset } from "./dataset.js";
import { JobInputError } from "./errors.js";
import { writeWorkFile } from "./files.js";
import { type JobRunContext, type JobRunInput, type JobRunOutput, report } from "./job-run.js";
import { JSON_MEDIA_TYPE, NDJSON_MEDIA_TYPE } from "./media-types.js";
import { loadModelSource } from "./model-source.js";
import { type BatchOutput, checkInputWidth, openOnnxModel, runBatches } from "./onnx-runner.js";

/** Batch size of inference and evaluation when the spec leaves it 0. */
export const DEFAULT_INFERENCE_BATCH_SIZE = 256;

/** The predictions line of row `row` of a batch: {"<output name>": [numbers]}. */
export function predictionLine(
  outputNames: readonly string[],
  outputs: ReadonlyMap<string, BatchOutput>,
  row: number,
): string {
  const object: Record<string, number[]> = {};
  for (const name of outputNames) {
    const output = outputs.get(name);
    if (output === undefined) continue;
    const values: number[] = new Array(output.width);
    for (let c = 0; c < output.width; c++) values[c] = output.values[row * output.width + c] ?? 0;
    object[name] = values;
  }
  return JSON.stringify(object);
}

/** Runs an INFERENCE job; see the module comment. */
export async function runInference(input: JobRunInput, ctx: JobRunContext): Promise<JobRunOutput> {
  if (input.modelPath === undefined)
    throw new JobInputError("an inference job needs a model (spec.model)");
  if (input.datasetPath === undefined)
    throw new JobInputError("an inference job needs a dataset (spec.dataset)");
  const source = await loadModelSource(
    input.modelPath,
    input.modelMediaType,
    input.initialWeightsPath,
  );
  const { dataset } = await loadDataset(
    input.datasetPath,
    input.datasetMediaType,
    columnChoiceOf(input.spec.hyperparameters, "none"),
  );
  const model = await openOnnxModel(source.bytes);
  try {
    checkInputWidth(model, dataset.featureCount, dataset.featureNames);
    const batchSize = model.fixedBatch ?? (input.spec.batchSize || DEFAULT_INFERENCE_BATCH_SIZE);
    await mkdir(ctx.workDir, { recursive: true });
    const predictionsPath = join(ctx.workDir, "predictions.ndjson");
    const file = await open(predictionsPath, "w");
    const widths = new Map<string, number>();
    let lastPercent = -1;
    report(ctx, {
      progress: 0,
      samplesProcessed: 0,
      totalSamples: dataset.rowCount,
      log: {
        level: "info",
        message: `inference over ${dataset.rowCount} rows × ${dataset.featureCount} features, batch ${batchSize}`,
      },
    });
    try {
      for await (const batch of runBatches(
        model,
        dataset.features,
        dataset.rowCount,
        dataset.featureCount,
        batchSize,
        ctx.signal,
      )) {
        let text = "";
        for (let r = 0; r < batch.count; r++)
          text += `${predictionLine(model.outputNames, batch.outputs, r)}\n`;
        await file.write(text);
        for (const [name, output] of batch.outputs) widths.set(name, output.width);
        const done = batch.start + batch.count;
        const percent = Math.floor((done * 100) / dataset.rowCount);
        if (percent !== lastPercent) {
          lastPercent = percent;
          report(ctx, {
            progress: done / dataset.rowCount,
            samplesProcessed: done,
            totalSamples: dataset.rowCount,
          });
        }
      }
    } finally {
      await file.close();
    }
    const finalMetrics = { "eval/samples": dataset.rowCount };
    const metricsDoc = {
      job_type: "inference",
      rows: dataset.rowCount,
      batch_size: batchSize,
      input: { name: model.inputName, type: model.inputType, features: dataset.featureCount },
      feature_columns: dataset.featureColumns,
      outputs: model.outputNames.map((name) => ({ name, width: widths.get(name) ?? 0 })),
      final: finalMetrics,
    };
    return {
      artifacts: [
        { name: "predictions", path: predictionsPath, mediaType: NDJSON_MEDIA_TYPE },
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
      finalMetrics,
    };
  } finally {
    await model.close();
  }
}
