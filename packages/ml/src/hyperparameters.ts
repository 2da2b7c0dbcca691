/**
 * Reading JobSpec.hyperparameters (text values) into typed settings. Every error names the key
 * (`hyperparameters.<key>`) and the rule it broke.
 */
import { JobInputError } from "./errors.js";

/** The hyperparameter map of a JobSpec. */
export type Hyperparameters = Readonly<Record<string, string>>;

/** The value of `key`, trimmed; undefined when missing or blank. */
export function textParam(params: Hyperparameters, key: string): string | undefined {
  const value = params[key]?.trim();
  return value === undefined || value === "" ? undefined : value;
}

/** Bounds of a numeric hyperparameter. */
export interface NumberRule {
  /** Smallest allowed value (inclusive unless `minExclusive`). */
  readonly min?: number;
  /** Whether `min` itself is refused. */
  readonly minExclusive?: boolean;
  /** Largest allowed value (inclusive unless `maxExclusive`). */
  readonly max?: number;
  /** Whether `max` itself is refused. */
  readonly maxExclusive?: boolean;
  /** Whether only integers are allowed. */
  readonly integer?: boolean;
}

function describeRule(rule: NumberRule): string {
  const kind = rule.integer ? "an integer" : "a number";
  const low = rule.min === undefined ? "" : `${rule.minExclusive ? ">" : ">="} ${rule.min}`;
  const high = rule.max === undefined ? "" : `${rule.maxExclusive ? "<" : "<="} ${rule.max}`;
  const bounds = [low, high].filter((part) => part !== "").join(" and ");
  return bounds === "" ? kind : `${kind} ${bounds}`;
}

/**
 * Checks `value` against `rule`.
 * @throws JobInputError naming `field` when it is not finite or out of bounds.
 */
export function checkNumber(field: string, value: number, rule: NumberRule): number {
  const bad =
    !Number.isFinite(value) ||
    (rule.integer === true && !Number.isInteger(value)) ||
    (rule.min !== undefined && (rule.minExclusive ? value <= rule.min : value < rule.min)) ||
    (rule.max !== undefined && (rule.maxExclusive ? value >= rule.max : value > rule.max));
  if (bad) throw new JobInputError(`${field} must be ${describeRule(rule)}, got ${value}`);
  return value;
}

/**
 * The number at `key`, or undefined when missing or blank.
 * @throws JobInputError naming `hyperparameters.<key>` when it is not a number within `rule`.
 */
export function numberParam(
  params: Hyperparameters,
  key: string,
  rule: NumberRule = {},
): number | undefined {
  const text = textParam(params, key);
  if (text === undefined) return undefined;
  const value = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(text)
    ? Number(text)
    : Number.NaN;
  if (!Number.isFinite(value)) {
    throw new JobInputError(
      `hyperparameters.${key} must be ${describeRule(rule)}, got ${JSON.stringify(text)}`,
    );
  }
  return checkNumber(`hyperparameters.${key}`, value, rule);
}

/** The comma-separated names at `key`, trimmed and without blanks; undefined when missing or blank. */
export function listParam(params: Hyperparameters, key: string): string[] | undefined {
  const text = textParam(params, key);
  if (text === undefined) return undefined;
  const names = text
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) throw new JobInputError(`hyperparameters.${key} names ${name} twice`);
    seen.add(name);
  }
  return names.length === 0 ? undefined : names;
}

/**
 * The seed of a job's pseudo-random choices: hyperparameter "seed" (an integer), default 0, so
 * a job is reproducible unless it asks otherwise.
 */
export function seedParam(params: Hyperparameters): number {
  return (
    numberParam(params, "seed", {
      integer: true,
      min: Number.MIN_SAFE_INTEGER,
      max: Number.MAX_SAFE_INTEGER,
    }) ?? 0
  );
}
