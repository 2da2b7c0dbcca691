/**
 * Durations and sizes as people write them in a job spec: `90s`, `10m`, `1.5h`, `2d`, `500ms`;
 * `512MiB`, `2GB`, `1048576`. A bare number is milliseconds or bytes.
 */

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  tb: 1000 ** 4,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/**
 * Milliseconds in `value`: a non-negative whole number (milliseconds) or a string of a number and
 * a unit (ms, s, m, h, d). Returns an error message instead when it is neither, or not a whole
 * number of milliseconds, or beyond Number.MAX_SAFE_INTEGER.
 */
export function parseDurationMs(value: unknown): number | string {
  return parseQuantity(
    value,
    DURATION_UNITS_MS,
    "milliseconds",
    "a duration such as 90s, 10m, 1h or 2d",
  );
}

/**
 * Bytes in `value`: a non-negative whole number (bytes) or a string of a number and a unit
 * (B, KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024; case ignored).
 * Returns an error message instead when it is neither.
 */
export function parseByteSize(value: unknown): number | string {
  return parseQuantity(
    value,
    SIZE_UNITS,
    "bytes",
    "a size such as 512MiB, 2GB or a number of bytes",
  );
}

function parseQuantity(
  value: unknown,
  units: Readonly<Record<string, number>>,
  baseUnit: string,
  expected: string,
): number | string {
  if (typeof value === "bigint") value = Number(value);
  if (typeof value === "number") {
    if (Number.isSafeInteger(value) && value >= 0) return value;
    return `must be ${expected}, got ${value}`;
  }
  if (typeof value !== "string") return `must be ${expected}`;
  const match = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = match?.[2]?.toLowerCase() ?? "";
  const factor = unit === "" ? 1 : units[unit];
  if (!match || factor === undefined) return `must be ${expected}, got ${JSON.stringify(value)}`;
  const result = Number(match[1]) * factor;
  if (!Number.isSafeInteger(result)) {
    return `must come to a whole number of ${baseUnit} (at most 2^53 - 1), got ${JSON.stringify(value)}`;
  }
  return result;
}
