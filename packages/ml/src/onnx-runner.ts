/**
 * Running an ONNX model with onnxruntime-node (CPU) over a feature matrix in batches. The model
 * must have one tensor input of rank 2, [batch, features], float32 or float64; the input's name,
 * type and shape come from the session's metadata. Every output's first dimension must be the
 * batch; the rest is flattened into one row of numbers per sample.
 */
import * as ort from "onnxruntime-node";
import { JobInputError } from "./errors.js";
import { onnxMetadata } from "./onnx-export.js";

/** One output of a batch: `width` numbers per row, row-major. */
export interface BatchOutput {
  readonly width: number;
  readonly values: ArrayLike<number>;
}

/** An opened ONNX model. */
export interface OnnxModel {
  /** The input's name. */
  readonly inputName: string;
  /** The input's element type. */
  readonly inputType: "float32" | "float64";
  /** Features per row when the model fixes them; undefined when dynamic. */
  readonly inputWidth: number | undefined;
  /** Batch size when the model fixes it; undefined when dynamic. */
  readonly fixedBatch: number | undefined;
  /** Output names in the model's order. */
  readonly outputNames: readonly string[];
  /** The model's metadata properties. */
  readonly metadata: ReadonlyMap<string, string>;
  /** Runs `rows` rows of `width` features; returns each output by name. */
  run(features: Float32Array, rows: number, width: number): Promise<Map<string, BatchOutput>>;
  /** Releases the session; safe to call twice. */
  close(): Promise<void>;
}

/** Options of {@link openOnnxModel}. */
export interface OnnxModelOptions {
  /** Threads onnxruntime uses inside an operator; default onnxruntime's choice (all cores). */
  readonly intraOpNumThreads?: number | undefined;
}

function dimension(value: number | string | undefined): number | undefined {
  return typeof value === "number" && value > 0 ? value : undefined;
}

/**
 * Opens the serialized ONNX model `bytes`.
 * @throws JobInputError when onnxruntime refuses the model or its input is not one rank-2 float
 * tensor.
 */
export async function openOnnxModel(
  bytes: Uint8Array,
  options: OnnxModelOptions = {},
): Promise<OnnxModel> {
  const metadata = onnxMetadata(bytes);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, {
      executionMode: "sequential",
      graphOptimizationLevel: "all",
      logSeverityLevel: 3,
      ...(options.intraOpNumThreads === undefined
        ? {}
        : { intraOpNumThreads: options.intraOpNumThreads }),
    });
  } catch (error) {
    throw new JobInputError(
      `onnxruntime cannot load the model: ${(error as Error).message.slice(0, 300)}`,
    );
  }
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await session.release();
  };
  try {
    if (session.inputMetadata.length !== 1) {
      throw new JobInputError(
        `the model has ${session.inputMetadata.length} inputs; exactly one is supported`,
      );
    }
    const input = session.inputMetadata[0];
    if (input === undefined || !input.isTensor)
      throw new JobInputError("the model's input is not a tensor");
    if (input.type !== "float32" && input.type !== "float64") {
      throw new JobInputError(
        `the model's input ${input.name} is ${input.type}; float32 or float64 is supported`,
      );
    }
    if (input.shape.length !== 2) {
      throw new JobInputError(
        `the model's input ${input.name} has rank ${input.shape.length}; [batch, features] is supported`,
      );
    }
    const inputType = input.type;
    const inputName = input.name;
    const fixedBatch = dimension(input.shape[0]);
    const inputWidth = dimension(input.shape[1]);
    const outputNames = [...session.outputNames];
    return {
      inputName,
      inputType,
      inputWidth,
      fixedBatch,
      outputNames,
      metadata,
      async run(features, rows, width) {
        const batch = fixedBatch ?? rows;
        if (rows > batch)
          throw new Error(`batch of ${rows} rows exceeds the model's fixed batch ${batch}`);
        const size = batch * width;
        const data =
          inputType === "float32"
            ? rows === batch
              ? features
              : Float32Array.from({ length: size }, (_, i) => features[i] ?? 0)
            : Float64Array.from({ length: size }, (_, i) => features[i] ?? 0);
        const results = await session.run({
          [inputName]: new ort.Tensor(inputType, data, [batch, width]),
        });
        const outputs = new Map<string, BatchOutput>();
        for (const name of outputNames) {
          const tensor = results[name];
          if (tensor === undefined)
            throw new JobInputError(`the model did not produce output ${name}`);
          const dims = tensor.dims;
          if (dims.length === 0 || dims[0] !== batch) {
            throw new JobInputError(
              `the model's output ${name} has shape [${dims.join(", ")}]; its first dimension must be the batch (${batch})`,
            );
          }
          const outWidth = dims.slice(1).reduce((n, d) => n * d, 1);
          const raw = tensor.data;
          if (typeof raw[0] === "string" || Array.isArray(raw)) {
            throw new JobInputError(
              `the model's output ${name} is ${tensor.type}; numeric outputs are supported`,
            );
          }
          const count = rows * outWidth;
          let values: ArrayLike<number>;
          if (raw instanceof BigInt64Array || raw instanceof BigUint64Array) {
            values = Array.from({ length: count }, (_, i) => Number(raw[i] ?? 0n));
          } else {
            const numeric = raw as Float32Array | Float64Array | Int32Array | Uint8Array;
            values = numeric.length === count ? numeric : numeric.subarray(0, count);
          }
          outputs.set(name, { width: outWidth, values });
          tensor.dispose();
        }
        return outputs;
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * Checks that a dataset's `featureCount` fits the model's input.
 * @throws JobInputError when the model fixes a different number of features.
 */
export function checkInputWidth(
  model: OnnxModel,
  featureCount: number,
  featureNames: readonly string[],
): void {
  if (model.inputWidth !== undefined && model.inputWidth !== featureCount) {
    const shown = featureNames.length <= 8 ? ` (${featureNames.join(", ")})` : "";
    throw new JobInputError(
      `the model's input ${model.inputName} takes ${model.inputWidth} features per row, the dataset gives ${featureCount}${shown}; set hyperparameters.feature_columns`,
    );
  }
}

/** One batch of a {@link runBatches} pass. */
export interface BatchResult {
  /** Index of the batch's first row. */
  readonly start: number;
  /** Rows in the batch. */
  readonly count: number;
  /** The outputs by name. */
  readonly outputs: ReadonlyMap<string, BatchOutput>;
}

/**
 * Runs `model` over `rowCount` rows of `features` in batches of `batchSize` (the model's fixed
 * batch when it has one; the last batch is padded with zeros and trimmed). Checks `signal`
 * between batches.
 */
export async function* runBatches(
  model: OnnxModel,
  features: Float32Array,
  rowCount: number,
  width: number,
  batchSize: number,
  signal: AbortSignal,
): AsyncGenerator<BatchResult> {
  const size = model.fixedBatch ?? Math.max(1, batchSize);
  for (let start = 0; start < rowCount; start += size) {
    signal.throwIfAborted();
    const count = Math.min(size, rowCount - start);
    const slice = features.subarray(start * width, (start + count) * width);
    yield { start, count, outputs: await model.run(slice, count, width) };
  }
}
