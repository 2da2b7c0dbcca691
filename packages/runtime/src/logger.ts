import { type DestinationStream, type Logger, pino } from "pino";
import pretty from "pino-pretty";

export type { Logger } from "pino";

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Service name, added to every line as `service`. */
  service: string;
  /** Minimum level: trace, debug, info (default), warn, error, fatal. */
  level?: string;
  /** "json" (default): one JSON object per line on stdout (written synchronously); "pretty": human-readable. */
  format?: "json" | "pretty";
  /** Where lines go instead of stdout (tests pass a stream to read them back). */
  destination?: DestinationStream;
}

/**
 * Field paths whose values are replaced by "[redacted]" wherever a caller logs them: credentials
 * in headers and the secret parts of identities. (The runtime's own lines never contain payloads or
 * headers; this guards what handlers log.)
 */
export const redactedPaths: readonly string[] = [
  "authorization",
  "cookie",
  "signature",
  "privateKey",
  "secretKey",
  "seed",
  "token",
  "password",
].flatMap((key) => [key, `*.${key}`, `*.*.${key}`, `*.headers["${key}"]`]);

/**
 * Creates the process's one pino logger. Each line carries `service`, an ISO `time` and (in JSON) the
 * level by name. Keys listed in {@link redactedPaths} are redacted; payloads are never logged.
 */
export function createLogger(opts: LoggerOptions): Logger {
  const options = {
    level: opts.level ?? "info",
    base: { service: opts.service },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: [...redactedPaths], censor: "[redacted]" },
  };
  if (opts.format === "pretty") {
    // A pino-pretty stream in this thread rather than a transport: no worker thread to keep alive.
    return pino(
      options,
      pretty({ destination: opts.destination ?? 1, translateTime: "SYS:HH:MM:ss.l", sync: true }),
    );
  }
  // Level as its name ("info"), which log pipelines read without a lookup table.
  const json = { ...options, formatters: { level: (label: string) => ({ level: label }) } };
  // Synchronous stdout: an async stream can lose or reorder the last lines when the process
  // exits right after them (as handleSignals does), and log volume here is one line per call.
  return pino(json, opts.destination ?? pino.destination({ dest: 1, sync: true }));
}
