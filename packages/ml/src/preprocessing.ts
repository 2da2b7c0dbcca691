/**
 * The preprocessing executor (runtime "tessera-data"): applies the declarative transforms of
 * hyperparameter "transforms" (a JSON list, applied in order) to a dataset and writes
 * - "data" (the transformed rows; with a split, the training part),
 * - "test" (with a split: the held-out part),
 * - "metrics" (application/json: row counts, the output columns and each transform's fitted
 *   parameters, so the same normalisation can be applied to new data),
 * in the input's format, or the one hyperparameter "output_format" ("csv" | "ndjson") asks for.
 *
 * Transforms:
 * - {"type":"normalize","method":"zscore"|"minmax","columns":["a","b"]}: z-score
 *   ((v - mean) / std, population std) or min-max ((v - min) / (max - min)) scaling. `method`
 *   defaults to zscore; `columns` defaults to every numeric column except the label column(s)
 *   (hyperparameter "label_column", default "label"). Statistics are fitted on the "data" part
 *   only (after a split, the test part is scaled with them); a constant column becomes 0;
 *   missing cells stay missing.
 * - {"type":"one_hot","column":"c"}: replaces column c by one 0/1 column "c_<value>" per distinct
 *   value (numeric values in numeric order, others in string order; at most 1000); a missing
 *   value gives all zeros.
 * - {"type":"shuffle","seed":7}: seeded shuffle of the rows (of each part); `seed` defaults to
 *   hyperparameter "seed" (default 0).
 * - {"type":"split","test_fraction":0.2}: the last round(rows × fraction) rows become "test"
 *   (shuffle first for a random split); at most one split, both parts non-empty.
 * Final metrics: "train/samples" (rows of "data") and "test/samples".
 */
import { readFile } from "node:fs/promises";
import { JobInputError } from "./errors.js";
import { writeWorkFile } from "./files.js";
import { type Hyperparameters, listParam, seedParam, textParam } from "./hyperparameters.js";
import {
  checkpoint,
  type JobRunContext,
  type JobRunInput,
  type JobRunOutput,
  report,
} from "./job-run.js";
import {
  datasetFormatOf,
  JSON_MEDIA_TYPE,
  mediaTypeOfFormat,
  type TableFormat,
} from "./media-types.js";
import { createRandom } from "./random.js";
import {
  type Cell,
  columnKind,
  isMissing,
  numericValue,
  parseTable,
  serializeTable,
  type Table,
} from "./table.js";

/** A normalisation transform. */
export interface NormalizeTransform {
  readonly type: "normalize";
  readonly method: "zscore" | "minmax";
  readonly columns: readonly string[] | undefined;
}

/** A one-hot encoding transform. */
export interface OneHotTransform {
  readonly type: "one_hot";
  readonly column: string;
}

/** A seeded shuffle. */
export interface ShuffleTransform {
  readonly type: "shuffle";
  readonly seed: number | undefined;
}

/** A train/test split. */
export interface SplitTransform {
  readonly type: "split";
  readonly testFraction: number;
}

/** One transform of the list. */
export type Transform = NormalizeTransform | OneHotTransform | ShuffleTransform | SplitTransform;

/** Most transforms in a list. */
export const MAX_TRANSFORMS = 64;
/** Most distinct values a one_hot column may have. */
export const MAX_ONE_HOT_CATEGORIES = 1000;

function fail(field: string, rule: string): never {
  throw new JobInputError(`hyperparameters.transforms${field} ${rule}`);
}

function onlyKeys(field: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key))
      fail(`${field}.${key}`, `is not a known setting (allowed: ${allowed.join(", ")})`);
  }
}

function columnName(field: string, value: unknown): string {
  if (typeof value !== "string" || value === "") fail(field, "must be a column name");
  return value;
}

/**
 * Parses the "transforms" hyperparameter.
 * @throws JobInputError naming the entry and field (e.g. `hyperparameters.transforms[1].method`).
 */
export function parseTransforms(text: string): Transform[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return fail("", "is not valid JSON");
  }
  if (!Array.isArray(value)) fail("", "must be a JSON list");
  if (value.length > MAX_TRANSFORMS) fail("", `must have at most ${MAX_TRANSFORMS} entries`);
  let splits = 0;
  return value.map((entry: unknown, index: number): Transform => {
    const field = `[${index}]`;
    if (entry === null || typeof entry !== "object" || Array.isArray(entry))
      fail(field, "must be an object");
    const object = entry as Record<string, unknown>;
    switch (object.type) {
      case "normalize": {
        onlyKeys(field, object, ["type", "method", "columns"]);
        const method = object.method ?? "zscore";
        if (method !== "zscore" && method !== "minmax")
          fail(`${field}.method`, "must be zscore or minmax");
        let columns: string[] | undefined;
        if (object.columns !== undefined) {
          if (!Array.isArray(object.columns) || object.columns.length === 0) {
            fail(`${field}.columns`, "must be a non-empty list of column names");
          }
          columns = object.columns.map((name: unknown, i: number) =>
            columnName(`${field}.columns[${i}]`, name),
          );
        }
        return { type: "normalize", method, columns };
      }
      case "one_hot":
        onlyKeys(field, object, ["type", "column"]);
        return { type: "one_hot", column: columnName(`${field}.column`, object.column) };
      case "shuffle": {
        onlyKeys(field, object, ["type", "seed"]);
        const seed = object.seed;
        if (seed !== undefined && (typeof seed !== "number" || !Number.isSafeInteger(seed))) {
          fail(`${field}.seed`, "must be an integer");
        }
        return { type: "shuffle", seed };
      }
      case "split": {
        onlyKeys(field, object, ["type", "test_fraction"]);
        const fraction = object.test_fraction;
        if (typeof fraction !== "number" || !(fraction > 0 && fraction < 1)) {
          fail(`${field}.test_fraction`, "must be a number between 0 and 1 (exclusive)");
        }
        if (++splits > 1) fail(field, "is a second split; at most one is allowed");
        return { type: "split", testFraction: fraction };
      }
      default:
        return fail(`${field}.type`, "must be one of normalize, one_hot, shuffle, split");
    }
  });
}

/** The dataset while transforms run: the "data" part and, after a split, the "test" part. */
interface State {
  columns: string[];
  data: Cell[][];
  test: Cell[][] | undefined;
}

function allRows(state: State): Cell[][] {
  return state.test === undefined ? state.data : [...state.data, ...state.test];
}

function indexOrFail(state: State, name: string, field: string): number {
  const index = state.columns.indexOf(name);
  if (index < 0)
    fail(field, `names column ${JSON.stringify(name)}, which the dataset does not have`);
  return index;
}

function normalize(
  state: State,
  transform: NormalizeTransform,
  field: string,
  labelColumns: readonly string[],
): Record<string, unknown> {
  const view: Table = { format: "csv", columns: state.columns, rows: allRows(state) };
  const names =
    transform.columns ??
    state.columns.filter(
      (name, index) => !labelColumns.includes(name) && columnKind(view, index).kind === "numeric",
    );
  const fitted: Record<string, Record<string, number>> = {};
  for (const name of names) {
    const index = indexOrFail(state, name, `${field}.columns`);
    const present: number[] = [];
    state.data.forEach((row, r) => {
      const cell = row[index];
      if (isMissing(cell)) return;
      const value = numericValue(cell);
      if (value === undefined) {
        throw new JobInputError(
          `normalize: column ${JSON.stringify(name)}, row ${r + 1}: not a number`,
        );
      }
      present.push(value);
    });
    if (present.length === 0)
      throw new JobInputError(`normalize: column ${JSON.stringify(name)} has no values`);
    let scale: (v: number) => number;
    if (transform.method === "zscore") {
      const mean = present.reduce((a, b) => a + b, 0) / present.length;
      const std = Math.sqrt(present.reduce((a, b) => a + (b - mean) ** 2, 0) / present.length);
      fitted[name] = { mean, std };
      scale = (v) => (std === 0 ? 0 : (v - mean) / std);
    } else {
      // A loop, not Math.min(...present): spreading a large column overflows the call stack.
      let min = Number.POSITIVE_INFINITY;
      let max = Number.NEGATIVE_INFINITY;
      for (const value of present) {
        if (value < min) min = value;
        if (value > max) max = value;
      }
      fitted[name] = { min, max };
      scale = (v) => (max === min ? 0 : (v - min) / (max - min));
    }
    for (const [part, rows] of [
      ["data", state.data],
      ["test", state.test ?? []],
    ] as const) {
      rows.forEach((row, r) => {
        const cell = row[index];
        if (isMissing(cell)) return;
        const value = numericValue(cell);
        if (value === undefined) {
          throw new JobInputError(
            `normalize: column ${JSON.stringify(name)}, ${part} row ${r + 1}: not a number`,
          );
        }
        row[index] = scale(value);
      });
    }
  }
  return { type: "normalize", method: transform.method, columns: fitted };
}

function categoryKey(cell: Cell): string {
  return typeof cell === "string"
    ? cell.trim()
    : typeof cell === "object"
      ? JSON.stringify(cell)
      : String(cell);
}

function oneHot(state: State, transform: OneHotTransform, field: string): Record<string, unknown> {
  const index = indexOrFail(state, transform.column, `${field}.column`);
  const keys = new Set<string>();
  for (const row of allRows(state)) {
    const cell = row[index];
    if (!isMissing(cell)) keys.add(categoryKey(cell ?? null));
    if (keys.size > MAX_ONE_HOT_CATEGORIES) {
      throw new JobInputError(
        `one_hot: column ${JSON.stringify(transform.column)} has more than ${MAX_ONE_HOT_CATEGORIES} distinct values`,
      );
    }
  }
  const categories = [...keys];
  const numeric = categories.every((key) => numericValue(key) !== undefined);
  categories.sort(
    numeric ? (a, b) => Number(a) - Number(b) : (a, b) => (a < b ? -1 : a > b ? 1 : 0),
  );
  const newColumns = categories.map((key) => `${transform.column}_${key}`);
  for (const name of newColumns) {
    if (state.columns.includes(name)) {
      throw new JobInputError(`one_hot: column ${JSON.stringify(name)} already exists`);
    }
  }
  const position = new Map(categories.map((key, i) => [key, i]));
  const encode = (row: Cell[]): Cell[] => {
    const cell = row[index];
    const hot = isMissing(cell) ? -1 : (position.get(categoryKey(cell ?? null)) ?? -1);
    const encoded = categories.map((_, i) => (i === hot ? 1 : 0));
    return [...row.slice(0, index), ...encoded, ...row.slice(index + 1)];
  };
  state.data = state.data.map(encode);
  if (state.test !== undefined) state.test = state.test.map(encode);
  state.columns = [
    ...state.columns.slice(0, index),
    ...newColumns,
    ...state.columns.slice(index + 1),
  ];
  return { type: "one_hot", column: transform.column, categories };
}

/** Runs a PREPROCESSING job; see the module comment. */
export async function runPreprocessing(
  input: JobRunInput,
  ctx: JobRunContext,
): Promise<JobRunOutput> {
  if (input.datasetPath === undefined)
    throw new JobInputError("a preprocessing job needs a dataset (spec.dataset)");
  const params: Hyperparameters = input.spec.hyperparameters;
  const transformsText = textParam(params, "transforms");
  if (transformsText === undefined)
    throw new JobInputError("hyperparameters.transforms is required (a JSON list)");
  const transforms = parseTransforms(transformsText);
  const inputFormat = datasetFormatOf(input.datasetMediaType, input.datasetPath);
  const outputFormatText = textParam(params, "output_format");
  if (
    outputFormatText !== undefined &&
    outputFormatText !== "csv" &&
    outputFormatText !== "ndjson"
  ) {
    throw new JobInputError("hyperparameters.output_format must be csv or ndjson");
  }
  const outputFormat: TableFormat = outputFormatText ?? inputFormat;
  const labelColumns = listParam(params, "label_column") ?? ["label"];
  const table = parseTable(await readFile(input.datasetPath, "utf8"), inputFormat);
  const state: State = {
    columns: [...table.columns],
    data: table.rows.map((row) => [...row]),
    test: undefined,
  };
  const rowsIn = state.data.length;
  const applied: Record<string, unknown>[] = [];
  for (const [i, transform] of transforms.entries()) {
    const field = `[${i}]`;
    switch (transform.type) {
      case "normalize":
        applied.push(normalize(state, transform, field, labelColumns));
        break;
      case "one_hot":
        applied.push(oneHot(state, transform, field));
        break;
      case "shuffle": {
        const seed = transform.seed ?? seedParam(params);
        const random = createRandom(`${seed}:shuffle:${i}`);
        random.shuffle(state.data);
        if (state.test !== undefined) random.shuffle(state.test);
        applied.push({ type: "shuffle", seed });
        break;
      }
      case "split": {
        const testCount = Math.round(state.data.length * transform.testFraction);
        if (testCount < 1 || testCount >= state.data.length) {
          throw new JobInputError(
            `hyperparameters.transforms${field}: a split of ${state.data.length} rows with test_fraction ${transform.testFraction} leaves an empty part`,
          );
        }
        state.test = state.data.slice(state.data.length - testCount);
        state.data = state.data.slice(0, state.data.length - testCount);
        applied.push({
          type: "split",
          test_fraction: transform.testFraction,
          test_rows: testCount,
        });
        break;
      }
    }
    await checkpoint(ctx.signal);
    report(ctx, {
      progress: (0.9 * (i + 1)) / transforms.length,
      log: { level: "debug", message: `applied ${transform.type}` },
    });
  }
  const ext = outputFormat === "csv" ? "csv" : "ndjson";
  const mediaType = mediaTypeOfFormat(outputFormat);
  const artifacts = [
    {
      name: "data",
      path: await writeWorkFile(
        ctx.workDir,
        `data.${ext}`,
        serializeTable({ format: outputFormat, columns: state.columns, rows: state.data }),
      ),
      mediaType,
    },
  ];
  if (state.test !== undefined) {
    artifacts.push({
      name: "test",
      path: await writeWorkFile(
        ctx.workDir,
        `test.${ext}`,
        serializeTable({ format: outputFormat, columns: state.columns, rows: state.test }),
      ),
      mediaType,
    });
  }
  const finalMetrics: Record<string, number> = {
    "train/samples": state.data.length,
    ...(state.test === undefined ? {} : { "test/samples": state.test.length }),
  };
  const metricsDoc = {
    job_type: "preprocessing",
    rows_in: rowsIn,
    format: outputFormat,
    columns: state.columns,
    transforms: applied,
    final: finalMetrics,
  };
  artifacts.push({
    name: "metrics",
    path: await writeWorkFile(
      ctx.workDir,
      "metrics.json",
      `${JSON.stringify(metricsDoc, null, 2)}\n`,
    ),
    mediaType: JSON_MEDIA_TYPE,
  });
  report(ctx, { progress: 1, metrics: finalMetrics });
  return { artifacts, finalMetrics };
}
