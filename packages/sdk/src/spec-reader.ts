/**
 * Reading a parsed YAML tree field by field: each check records a problem under the field's
 * dotted path (`requirements.max_attempts`, `federation.participants[1].dataset.file`) instead
 * of stopping, so one run reports every bad field.
 */

/** One bad field: where and what. */
export interface SpecProblem {
  /** Dotted path of the field in the document, e.g. "dataset.file"; "" for the document itself. */
  readonly path: string;
  /** What is wrong, e.g. "no such file ./data.csv". */
  readonly message: string;
}

/** A YAML mapping as parsed: string keys to values. */
export type SpecMap = Readonly<Record<string, unknown>>;

/** Collects problems while fields are read. */
export class SpecReader {
  readonly problems: SpecProblem[] = [];

  /** Records that the field at `path` is wrong. */
  fail(path: string, message: string): undefined {
    this.problems.push({ path, message });
    return undefined;
  }

  /**
   * `value` as a mapping whose keys are all in `known`; an unknown key is recorded (naming the
   * known ones) and skipped.
   */
  map(value: unknown, path: string, known: readonly string[]): SpecMap | undefined {
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return this.fail(path, `must be a mapping (${known.join(", ")}), got ${describe(value)}`);
    }
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) {
        this.fail(join(path, key), `unknown field; expected one of ${known.join(", ")}`);
      }
    }
    return value as SpecMap;
  }

  /** A string; numbers are NOT turned into strings here (see {@link text}). */
  string(value: unknown, path: string): string | undefined {
    if (typeof value !== "string")
      return this.fail(path, `must be a string, got ${describe(value)}`);
    return value;
  }

  /** A non-empty string without leading or trailing spaces. */
  nonEmptyString(value: unknown, path: string): string | undefined {
    const text = this.string(value, path);
    if (text === undefined) return undefined;
    if (text.trim() === "") return this.fail(path, "must not be empty");
    return text;
  }

  /** A scalar as text: a string as is, a number or boolean written out. */
  text(value: unknown, path: string): string | undefined {
    if (typeof value === "string") return value;
    if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") {
      return String(value);
    }
    return this.fail(path, `must be a string, got ${describe(value)}`);
  }

  /** A whole number from `min` to `max` (YAML integers arrive as bigint). */
  integer(value: unknown, path: string, min: number, max: number): number | undefined {
    const number = typeof value === "bigint" ? Number(value) : value;
    if (typeof number !== "number" || !Number.isInteger(number)) {
      return this.fail(path, `must be a whole number, got ${describe(value)}`);
    }
    if (number < min || number > max) {
      return this.fail(path, `must be from ${min} to ${max}, got ${String(value)}`);
    }
    return number;
  }

  /** A number from `min` to `max`. */
  number(value: unknown, path: string, min: number, max: number): number | undefined {
    const number = typeof value === "bigint" ? Number(value) : value;
    if (typeof number !== "number" || !Number.isFinite(number)) {
      return this.fail(path, `must be a number, got ${describe(value)}`);
    }
    if (number < min || number > max) {
      return this.fail(path, `must be from ${min} to ${max}, got ${String(value)}`);
    }
    return number;
  }

  /** true or false. */
  boolean(value: unknown, path: string): boolean | undefined {
    if (typeof value !== "boolean") {
      return this.fail(path, `must be true or false, got ${describe(value)}`);
    }
    return value;
  }

  /** A list. */
  list(value: unknown, path: string): readonly unknown[] | undefined {
    if (!Array.isArray(value)) return this.fail(path, `must be a list, got ${describe(value)}`);
    return value;
  }
}

/** `parent.key`, or `key` at the top. */
export function join(parent: string, key: string): string {
  return parent === "" ? key : `${parent}.${key}`;
}

/** How a value reads in a problem: its type, and the value itself when short. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") {
    return value.length <= 40 ? JSON.stringify(value) : `a ${value.length}-character string`;
  }
  return String(value);
}
