/**
 * Typed configuration from environment variables.
 *
 * Written here rather than taken from envalid or zod: the whole contract (six variable kinds,
 * every problem reported at once, a frozen result, a markdown reference table) is about a hundred
 * lines, and owning it keeps the messages exactly as operators read them
 * (`PORT: must be an integer in 0..65535, got "abc"`) without adapting a schema library's errors.
 */

/** How one variable is parsed. Build it with {@link str}, {@link int}, {@link port}, {@link url}, {@link bool} or {@link oneOf}. */
export interface VarSpec<T> {
  /** Short type description for the reference table, e.g. "integer 0..65535". */
  readonly type: string;
  readonly default: T | undefined;
  readonly doc: string | undefined;
  /** Parses a present, non-empty value; returns the problem text instead when it is invalid. */
  readonly parse: (raw: string) => { ok: true; value: T } | { ok: false; problem: string };
}

/** A set of variables by name. */
export type ConfigSpec = Record<string, VarSpec<unknown>>;

/** The parsed configuration a spec describes. */
export type ConfigOf<S extends ConfigSpec> = {
  [K in keyof S]: S[K] extends VarSpec<infer T> ? T : never;
};

/** Thrown by {@link parseConfig}; `problems` has one line per missing or invalid variable. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = Object.freeze([...problems]);
  }
}

function varSpec<T>(
  type: string,
  opts: { default?: T | undefined; doc?: string | undefined } | undefined,
  parse: VarSpec<T>["parse"],
): VarSpec<T> {
  return Object.freeze({ type, default: opts?.default, doc: opts?.doc, parse });
}

const ok = <T>(value: T) => ({ ok: true as const, value });
const bad = (problem: string, raw: string) => ({
  ok: false as const,
  problem: `${problem}, got ${JSON.stringify(raw)}`,
});

/** Any string. */
export function str(opts?: { default?: string; doc?: string }): VarSpec<string> {
  return varSpec("string", opts, ok);
}

/** A decimal integer, optionally bounded (inclusive). */
export function int(opts?: {
  default?: number;
  min?: number;
  max?: number;
  doc?: string;
}): VarSpec<number> {
  const { min, max } = opts ?? {};
  const range =
    min !== undefined && max !== undefined
      ? ` in ${min}..${max}`
      : min !== undefined
        ? ` >= ${min}`
        : max !== undefined
          ? ` <= ${max}`
          : "";
  return varSpec(`integer${range}`, opts, (raw) => {
    const n = Number(raw);
    const valid =
      /^-?\d+$/.test(raw) &&
      Number.isSafeInteger(n) &&
      (min === undefined || n >= min) &&
      (max === undefined || n <= max);
    return valid ? ok(n) : bad(`must be an integer${range}`, raw);
  });
}

/** A TCP port, 0..65535 (0 asks the OS for a free port). */
export function port(opts?: { default?: number; doc?: string }): VarSpec<number> {
  return int({ ...opts, min: 0, max: 65535 });
}

/** An absolute http(s) URL; trailing slashes are removed, so `${url}/path` is always right. */
export function url(opts?: { default?: string; doc?: string }): VarSpec<string> {
  return varSpec("http(s) URL", opts, (raw) => {
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      return bad("must be an http(s) URL", raw);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      return bad("must be an http(s) URL", raw);
    }
    return ok(raw.replace(/\/+$/, ""));
  });
}

const truthy = ["true", "1", "yes", "on"];
const falsy = ["false", "0", "no", "off"];

/** A boolean: true/false, 1/0, yes/no, on/off (any case). */
export function bool(opts?: { default?: boolean; doc?: string }): VarSpec<boolean> {
  return varSpec("boolean", opts, (raw) => {
    const v = raw.toLowerCase();
    if (truthy.includes(v)) return ok(true);
    if (falsy.includes(v)) return ok(false);
    return bad("must be true or false", raw);
  });
}

/** A comma-separated list of strings; blanks around and between items are dropped. Default empty. */
export function list(opts?: { doc?: string }): VarSpec<readonly string[]> {
  return varSpec("comma-separated list", { default: Object.freeze([]), ...opts }, (raw) =>
    ok(
      Object.freeze(
        raw
          .split(",")
          .map((item) => item.trim())
          .filter((item) => item.length > 0),
      ),
    ),
  );
}

/** One of a fixed set of strings (exact match). */
export function oneOf<T extends string>(
  values: readonly T[],
  opts?: { default?: T; doc?: string },
): VarSpec<T> {
  return varSpec(values.join(" \\| "), opts, (raw) =>
    (values as readonly string[]).includes(raw)
      ? ok(raw as T)
      : bad(`must be one of ${values.join(", ")}`, raw),
  );
}

/**
 * Parses `env` (default `process.env`) against `spec` and returns a frozen object.
 * An unset or empty variable takes its default; without a default it is a problem.
 * Throws {@link ConfigError} naming every missing or invalid variable, not just the first.
 */
export function parseConfig<S extends ConfigSpec>(
  spec: S,
  env: NodeJS.ProcessEnv = process.env,
): Readonly<ConfigOf<S>> {
  const result: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, v] of Object.entries(spec)) {
    const raw = env[name];
    if (raw === undefined || raw === "") {
      if (v.default === undefined) problems.push(`${name}: missing`);
      else result[name] = v.default;
      continue;
    }
    const parsed = v.parse(raw);
    if (parsed.ok) result[name] = parsed.value;
    else problems.push(`${name}: ${parsed.problem}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(result) as Readonly<ConfigOf<S>>;
}

/**
 * Like {@link parseConfig}, but on a problem prints one line per problem to stderr and exits
 * with status 78 (EX_CONFIG). Meant for `main.ts` only.
 */
export function loadConfigOrExit<S extends ConfigSpec>(
  spec: S,
  env: NodeJS.ProcessEnv = process.env,
): Readonly<ConfigOf<S>> {
  try {
    return parseConfig(spec, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const problem of err.problems) process.stderr.write(`${problem}\n`);
    process.exit(78);
  }
}

const logLevels = ["trace", "debug", "info", "warn", "error", "fatal"] as const;

/**
 * Variables every service reads; spread into a service's own spec and give PORT a default:
 * `{ ...serverConfigSpec, PORT: port({ default: 8080 }), WALLET_URL: url() }`.
 */
export const serverConfigSpec = Object.freeze({
  HOST: str({ default: "0.0.0.0", doc: "Address to listen on." }),
  PORT: port({ doc: "Port for Connect, gRPC, gRPC-Web, /healthz and /metrics." }),
  LOG_LEVEL: oneOf(logLevels, { default: "info", doc: "Minimum log level." }),
  LOG_FORMAT: oneOf(["json", "pretty"] as const, {
    default: "json",
    doc: "`json` (one object per line) or `pretty` (for a terminal).",
  }),
  MAX_MESSAGE_BYTES: int({
    default: 4 * 1024 * 1024,
    min: 1,
    doc: "Largest request or response message; larger ones fail with resource_exhausted.",
  }),
  DEFAULT_DEADLINE_MS: int({
    default: 30_000,
    min: 1,
    doc: "Deadline of a call whose client set none.",
  }),
  MAX_DEADLINE_MS: int({
    default: 300_000,
    min: 1,
    doc: "Longer client deadlines are shortened to this.",
  }),
  CORS_ORIGINS: str({
    default: "*",
    doc: "Browser origins allowed to call, comma-separated, or `*` for any.",
  }),
  SHUTDOWN_GRACE_MS: int({
    default: 10_000,
    min: 0,
    doc: "On SIGTERM, how long in-flight calls may finish before connections are cut.",
  }),
});

/** A markdown table of the variables in `spec`: name, type, default, description. */
export function describeConfig(spec: ConfigSpec): string {
  const rows = Object.entries(spec).map(([name, v]) => {
    const text = String(v.default);
    const def = v.default === undefined ? "(required)" : text === "" ? "(empty)" : `\`${text}\``;
    return `| \`${name}\` | ${v.type} | ${def} | ${v.doc ?? ""} |`;
  });
  return ["| Variable | Type | Default | Description |", "|---|---|---|---|", ...rows].join("\n");
}
