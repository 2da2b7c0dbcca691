/**
 * Datasets as tables: CSV with a header row, or NDJSON with one JSON object per line. Cells keep
 * their text (CSV) or JSON value (NDJSON), so a table written back unchanged keeps its columns'
 * spelling; numbers are read from cells only when a column is used as a feature or label.
 */
import { readFile } from "node:fs/promises";
import { parse } from "csv-parse/sync";
import { JobInputError } from "./errors.js";
import type { TableFormat } from "./media-types.js";

/** One cell: CSV text, or an NDJSON field's JSON value (null when the field is absent). */
export type Cell =
  | string
  | number
  | boolean
  | null
  | readonly Cell[]
  | { readonly [key: string]: Cell };

/** A dataset in memory. */
export interface Table {
  /** The format it was read from (and is written back in by default). */
  readonly format: TableFormat;
  /** Column names: the CSV header, or the NDJSON keys in order of first appearance. */
  readonly columns: readonly string[];
  /** Rows of cells, one per column. */
  readonly rows: readonly (readonly Cell[])[];
}

/**
 * Parses CSV text whose first record is the header.
 * @throws JobInputError for malformed CSV (naming the line), an empty or repeated header name,
 * or no header.
 */
export function parseCsv(text: string): Table {
  let records: string[][];
  try {
    records = parse(text, { bom: true, skip_empty_lines: true }) as string[][];
  } catch (error) {
    // csv-parse messages can quote the offending field; report its code and line only.
    const { code, lines } = error as { code?: unknown; lines?: unknown };
    const where = typeof lines === "number" ? `, line ${lines}` : "";
    const what =
      typeof code === "string"
        ? code.replace(/^CSV_/, "").toLowerCase().replaceAll("_", " ")
        : "malformed";
    throw new JobInputError(`CSV dataset${where}: ${what}`);
  }
  const header = records[0];
  if (header === undefined) throw new JobInputError("CSV dataset is empty (no header row)");
  const columns = header.map((name) => name.trim());
  checkColumnNames(columns, "CSV header");
  return { format: "csv", columns, rows: records.slice(1) };
}

/**
 * Parses NDJSON text: one JSON object per non-blank line. Columns are the keys in order of first
 * appearance; a row without a key has null there.
 * @throws JobInputError naming the line when it is not JSON or not an object.
 */
export function parseNdjson(text: string): Table {
  const columns: string[] = [];
  const indexOf = new Map<string, number>();
  const objects: Record<string, Cell>[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? "").trim();
    if (line === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new JobInputError(`NDJSON dataset, line ${i + 1}: not valid JSON`);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new JobInputError(`NDJSON dataset, line ${i + 1}: expected a JSON object`);
    }
    const object = value as Record<string, Cell>;
    for (const key of Object.keys(object)) {
      if (!indexOf.has(key)) {
        indexOf.set(key, columns.length);
        columns.push(key);
      }
    }
    objects.push(object);
  }
  checkColumnNames(columns, "NDJSON field");
  const rows = objects.map((object) => columns.map((column) => object[column] ?? null));
  return { format: "ndjson", columns, rows };
}

function checkColumnNames(columns: readonly string[], what: string): void {
  const seen = new Set<string>();
  columns.forEach((name, index) => {
    if (name === "") throw new JobInputError(`${what} ${index + 1} has an empty name`);
    if (seen.has(name)) throw new JobInputError(`${what} ${JSON.stringify(name)} repeats`);
    seen.add(name);
  });
}

/** Parses `text` in `format`. */
export function parseTable(text: string, format: TableFormat): Table {
  return format === "csv" ? parseCsv(text) : parseNdjson(text);
}

/** Reads and parses the dataset file at `path` (UTF-8). */
export async function readTable(path: string, format: TableFormat): Promise<Table> {
  return parseTable(await readFile(path, "utf8"), format);
}

function csvField(cell: Cell): string {
  let text: string;
  if (cell === null) return "";
  if (typeof cell === "string") text = cell;
  else if (typeof cell === "number" || typeof cell === "boolean") text = String(cell);
  else text = JSON.stringify(cell);
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * The text of `table` in `format` (default its own): CSV with a header row and "\n" line ends, or
 * NDJSON with one object per row (keys in column order). Numbers are written in JavaScript's
 * shortest round-trip form.
 */
export function serializeTable(table: Table, format: TableFormat = table.format): string {
  if (format === "csv") {
    const lines = [table.columns.map((name) => csvField(name)).join(",")];
    for (const row of table.rows) lines.push(row.map((cell) => csvField(cell)).join(","));
    return `${lines.join("\n")}\n`;
  }
  let text = "";
  for (const row of table.rows) {
    const object: Record<string, Cell> = {};
    table.columns.forEach((name, index) => {
      object[name] = row[index] ?? null;
    });
    text += `${JSON.stringify(object)}\n`;
  }
  return text;
}

const NUMBER_PATTERN = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Whether `cell` holds no value: null, or blank text. */
export function isMissing(cell: Cell | undefined): boolean {
  return cell === undefined || cell === null || (typeof cell === "string" && cell.trim() === "");
}

/**
 * The number in a scalar cell: a finite JSON number, a boolean (1 or 0), or text in decimal or
 * exponent notation. Undefined for anything else (missing, other text, arrays, objects).
 */
export function numericValue(cell: Cell | undefined): number | undefined {
  if (typeof cell === "number") return Number.isFinite(cell) ? cell : undefined;
  if (typeof cell === "boolean") return cell ? 1 : 0;
  if (typeof cell === "string") {
    const text = cell.trim();
    return NUMBER_PATTERN.test(text) ? Number(text) : undefined;
  }
  return undefined;
}

/** How a column can be used. */
export interface ColumnKind {
  /**
   * "numeric": every present cell is a number; "vector": every present cell is an array of
   * numbers of one length (NDJSON); "empty": no present cell; "other": anything else.
   */
  readonly kind: "numeric" | "vector" | "empty" | "other";
  /** Values a row contributes: 1 for numeric, the array length for vector, 0 otherwise. */
  readonly width: number;
}

/** The kind of column `index` of `table`. */
export function columnKind(table: Table, index: number): ColumnKind {
  let kind: ColumnKind["kind"] = "empty";
  let width = 0;
  for (const row of table.rows) {
    const cell = row[index];
    if (isMissing(cell)) continue;
    if (Array.isArray(cell)) {
      const numeric = cell.every((item) => typeof item === "number" && Number.isFinite(item));
      if (!numeric || (kind !== "empty" && (kind !== "vector" || width !== cell.length))) {
        return { kind: "other", width: 0 };
      }
      kind = "vector";
      width = cell.length;
    } else {
      if (numericValue(cell) === undefined || kind === "vector") return { kind: "other", width: 0 };
      kind = "numeric";
      width = 1;
    }
  }
  return { kind, width };
}

/** Index of column `name` in `table`, or -1. */
export function columnIndex(table: Table, name: string): number {
  return table.columns.indexOf(name);
}
