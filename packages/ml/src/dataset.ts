/**
 * Turning a table into numbers: a row-major float32 feature matrix and, for labelled work, a
 * label matrix. Column choice follows the hyperparameters "label_column" (default "label"; a
 * comma-separated list for several target columns) and "feature_columns" (comma-separated;
 * default every numeric column that is not a label). NDJSON fields holding arrays of numbers of
 * one length ("vector" columns) contribute one feature per element.
 */
import { JobInputError } from "./errors.js";
import { type Hyperparameters, listParam } from "./hyperparameters.js";
import { datasetFormatOf } from "./media-types.js";
import {
  columnIndex,
  columnKind,
  isMissing,
  numericValue,
  readTable,
  type Table,
} from "./table.js";

/** Whether labels must, may or must not be read. */
export type LabelMode = "required" | "optional" | "none";

/** Which columns to use. */
export interface ColumnChoice {
  /** Label columns; default ["label"]. */
  readonly labelColumns?: readonly string[] | undefined;
  /** Feature columns; default every numeric or vector column that is not a label. */
  readonly featureColumns?: readonly string[] | undefined;
  /**
   * "required": the label columns must exist; "optional": read them when they exist (inference);
   * "none": ignore labels, but still keep them out of the default features.
   */
  readonly labels: LabelMode;
}

/** A table as numbers. */
export interface Dataset {
  /** Number of rows. */
  readonly rowCount: number;
  /** The feature columns used, in order. */
  readonly featureColumns: readonly string[];
  /** Names of the feature matrix's columns (a vector column "x" of width 3 gives x[0], x[1], x[2]). */
  readonly featureNames: readonly string[];
  /** Values per row in `features`. */
  readonly featureCount: number;
  /** Row-major features, rowCount × featureCount. */
  readonly features: Float32Array;
  /** The label columns read (empty when no labels were read). */
  readonly labelColumns: readonly string[];
  /** Values per row in `labels`; 0 when no labels were read. */
  readonly labelWidth: number;
  /** Row-major labels, rowCount × labelWidth (float64, so integer class ids stay exact). */
  readonly labels: Float64Array | undefined;
}

/** The column choice of a job's hyperparameters ("label_column", "feature_columns"). */
export function columnChoiceOf(params: Hyperparameters, labels: LabelMode): ColumnChoice {
  return {
    labelColumns: listParam(params, "label_column"),
    featureColumns: listParam(params, "feature_columns"),
    labels,
  };
}

function describeCell(table: Table, rowIndex: number, index: number): string {
  const cell = table.rows[rowIndex]?.[index];
  if (isMissing(cell)) return "is missing";
  const text = typeof cell === "string" ? cell : JSON.stringify(cell);
  // Quote at most a short prefix of the offending cell: enough to find it, never a payload.
  const shown = text.length > 24 ? `${text.slice(0, 24)}…` : text;
  return `${JSON.stringify(shown)} is not a number`;
}

/**
 * Copies the numbers of `columns` into a row-major matrix.
 * @throws JobInputError naming the column and the 1-based data row (header excluded) of the first
 * missing or non-numeric value.
 */
function readMatrix<T extends Float32Array | Float64Array>(
  table: Table,
  columns: readonly { name: string; index: number; width: number; vector: boolean }[],
  role: string,
  make: (length: number) => T,
): T {
  const width = columns.reduce((sum, column) => sum + column.width, 0);
  const out = make(table.rows.length * width);
  table.rows.forEach((row, r) => {
    let offset = r * width;
    for (const column of columns) {
      const cell = row[column.index];
      if (column.vector) {
        if (!Array.isArray(cell) || cell.length !== column.width) {
          throw new JobInputError(
            `${role} column ${JSON.stringify(column.name)}, row ${r + 1}: expected an array of ${column.width} numbers`,
          );
        }
        for (const item of cell) out[offset++] = item as number;
      } else {
        const value = numericValue(cell);
        if (value === undefined) {
          throw new JobInputError(
            `${role} column ${JSON.stringify(column.name)}, row ${r + 1}: ${describeCell(table, r, column.index)}`,
          );
        }
        out[offset++] = value;
      }
    }
  });
  return out;
}

function usable(table: Table, name: string, role: string, setting: string) {
  const index = columnIndex(table, name);
  if (index < 0) {
    throw new JobInputError(
      `${role} column ${JSON.stringify(name)} is not in the dataset (set hyperparameters.${setting})`,
    );
  }
  const kind = columnKind(table, index);
  if (kind.kind === "other" || kind.kind === "empty") {
    const firstBad = table.rows.findIndex((row) => {
      const cell = row[index];
      return isMissing(cell) || (numericValue(cell) === undefined && !Array.isArray(cell));
    });
    if (firstBad >= 0) {
      throw new JobInputError(
        `${role} column ${JSON.stringify(name)}, row ${firstBad + 1}: ${describeCell(table, firstBad, index)}`,
      );
    }
    throw new JobInputError(
      `${role} column ${JSON.stringify(name)} is not numeric (mixes numbers, arrays of other lengths or text)`,
    );
  }
  return { name, index, width: kind.width, vector: kind.kind === "vector" };
}

/**
 * The numbers of `table` for `choice`.
 * @throws JobInputError when the dataset has no rows, a named column is absent or not numeric,
 * a value is missing or not a number (naming column and row), or no feature column remains.
 */
export function selectDataset(table: Table, choice: ColumnChoice): Dataset {
  if (table.rows.length === 0) throw new JobInputError("the dataset has no rows");
  const labelNames = choice.labelColumns ?? ["label"];
  const readLabels =
    choice.labels === "required" ||
    (choice.labels === "optional" && labelNames.every((name) => table.columns.includes(name)));
  const labelColumns = readLabels
    ? labelNames.map((name) => usable(table, name, "label", "label_column"))
    : [];

  let featureColumns: { name: string; index: number; width: number; vector: boolean }[];
  if (choice.featureColumns !== undefined) {
    featureColumns = choice.featureColumns.map((name) => {
      if (labelNames.includes(name) && choice.labels !== "none") {
        throw new JobInputError(
          `column ${JSON.stringify(name)} cannot be both a feature and a label`,
        );
      }
      return usable(table, name, "feature", "feature_columns");
    });
  } else {
    featureColumns = [];
    table.columns.forEach((name, index) => {
      if (labelNames.includes(name)) return;
      const kind = columnKind(table, index);
      if (kind.kind === "numeric" || kind.kind === "vector") {
        featureColumns.push({ name, index, width: kind.width, vector: kind.kind === "vector" });
      }
    });
    if (featureColumns.length === 0) {
      throw new JobInputError(
        "the dataset has no numeric feature column (set hyperparameters.feature_columns)",
      );
    }
  }
  const featureNames = featureColumns.flatMap((column) =>
    column.vector
      ? Array.from({ length: column.width }, (_, i) => `${column.name}[${i}]`)
      : [column.name],
  );
  if (featureNames.length === 0) throw new JobInputError("the feature columns hold no values");
  const features = readMatrix(table, featureColumns, "feature", (n) => new Float32Array(n));
  for (let i = 0; i < features.length; i++) {
    if (!Number.isFinite(features[i])) {
      const row = Math.floor(i / featureNames.length) + 1;
      throw new JobInputError(
        `feature ${featureNames[i % featureNames.length]}, row ${row}: value overflows float32`,
      );
    }
  }
  const labelWidth = labelColumns.reduce((sum, column) => sum + column.width, 0);
  return {
    rowCount: table.rows.length,
    featureColumns: featureColumns.map((column) => column.name),
    featureNames,
    featureCount: featureNames.length,
    features,
    labelColumns: labelColumns.map((column) => column.name),
    labelWidth,
    labels: readLabels
      ? readMatrix(table, labelColumns, "label", (n) => new Float64Array(n))
      : undefined,
  };
}

/** Reads the dataset file at `path` (format from `mediaType` or the file name) and selects its numbers. */
export async function loadDataset(
  path: string,
  mediaType: string | undefined,
  choice: ColumnChoice,
): Promise<{ table: Table; dataset: Dataset }> {
  const table = await readTable(path, datasetFormatOf(mediaType, path));
  return { table, dataset: selectDataset(table, choice) };
}
