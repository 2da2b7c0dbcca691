/**
 * Labels as training or evaluation targets, one row per sample with the model output's width:
 * - sparse_categorical_crossentropy: one label column of integer class ids in [0, units), turned
 *   into one-hot rows;
 * - categorical_crossentropy: one integer class-id column (turned into one-hot rows) or `units`
 *   label values per row in [0, 1] (one-hot or a distribution);
 * - binary_crossentropy: `units` label values per row in [0, 1];
 * - mse: `units` label values per row.
 */
import type { Dataset } from "./dataset.js";
import { JobInputError } from "./errors.js";
import type { Loss } from "./sequential-model.js";

function labelName(dataset: Dataset): string {
  return dataset.labelColumns.length === 1
    ? `label column ${JSON.stringify(dataset.labelColumns[0])}`
    : `label columns ${dataset.labelColumns.join(",")}`;
}

/**
 * The target matrix (rowCount × units, row-major) of `dataset`'s labels for `loss`.
 * @throws JobInputError naming the label column and row of the first unusable label, or when the
 * label width does not fit the output's `units`.
 */
export function targetMatrix(loss: Loss, dataset: Dataset, units: number): Float64Array {
  const labels = dataset.labels;
  if (labels === undefined) throw new JobInputError("the dataset has no labels");
  const n = dataset.rowCount;
  const width = dataset.labelWidth;
  const name = labelName(dataset);
  const out = new Float64Array(n * units);
  const classIds =
    loss === "sparse_categorical_crossentropy" ||
    (loss === "categorical_crossentropy" && width === 1);
  if (classIds) {
    if (width !== 1)
      throw new JobInputError(
        `loss ${loss} needs one label column of class ids, got ${width} values per row`,
      );
    for (let r = 0; r < n; r++) {
      const value = labels[r] ?? Number.NaN;
      if (!Number.isInteger(value) || value < 0 || value >= units) {
        throw new JobInputError(
          `${name}, row ${r + 1}: ${value} is not a class id from 0 to ${units - 1} (the output has ${units} units)`,
        );
      }
      out[r * units + value] = 1;
    }
    return out;
  }
  if (width !== units) {
    throw new JobInputError(
      `${name} give ${width} values per row, the output has ${units} units (loss ${loss})`,
    );
  }
  for (let i = 0; i < labels.length; i++) {
    const value = labels[i] ?? Number.NaN;
    if (loss !== "mse" && !(value >= 0 && value <= 1)) {
      throw new JobInputError(
        `${name}, row ${Math.floor(i / width) + 1}: ${value} is not in [0, 1] (loss ${loss})`,
      );
    }
    out[i] = value;
  }
  return out;
}
