import { isAbsolute, join, resolve } from "node:path";
import { int, loadConfigOrExit, oneOf, serverConfigSpec, str } from "@tessera/runtime";
import { DEFAULT_PORT_BASE, MAX_PORT_OFFSET } from "./services.js";

/** Facts about where the launcher runs that its defaults depend on. */
export interface DevnetEnvironment {
  /** The monorepo root; the default data directory is `<repoRoot>/.tessera-data`. */
  repoRoot: string;
  /** Whether the launcher's stdout is a terminal: pretty, coloured logs if so, JSON lines if not. */
  isTTY: boolean;
  /** Relative TESSERA_DATA_DIR values are resolved against this; default process.cwd(). */
  cwd?: string;
}

/**
 * The launcher's variables. Those without the TESSERA_ prefix are handed to every service under
 * the same name; the TESSERA_ ones are the launcher's own.
 */
export function devnetConfigSpec(environment: DevnetEnvironment) {
  return {
    TESSERA_DATA_DIR: str({
      default: join(environment.repoRoot, ".tessera-data"),
      doc: "Root of the network's files: <dir>/<service> is each service's DATA_DIR, <dir>/logs its log. Networks with different directories are kept apart.",
    }),
    TESSERA_PORT_BASE: int({
      default: DEFAULT_PORT_BASE,
      min: 1,
      max: 65535 - MAX_PORT_OFFSET,
      doc: "Service ports are base+1 (job-server), +2 (gateway), +3 (registry), +4 (compute-node), +5 (wallet). Change it to run a second network.",
    }),
    TESSERA_HOST: str({
      default: "127.0.0.1",
      doc: "Address the services bind and are dialled on. 0.0.0.0 opens them to the network.",
    }),
    TESSERA_STARTUP_TIMEOUT_MS: int({
      default: 30_000,
      min: 1,
      doc: "How long each service may take to report SERVING on grpc.health.v1.",
    }),
    LOG_LEVEL: serverConfigSpec.LOG_LEVEL,
    LOG_FORMAT: oneOf(["json", "pretty"], {
      default: environment.isTTY ? "pretty" : "json",
      doc: "Log format of the services: pretty on a terminal, JSON lines otherwise.",
    }),
    SHUTDOWN_GRACE_MS: serverConfigSpec.SHUTDOWN_GRACE_MS,
  };
}

/** The launcher's parsed settings. */
export interface DevnetConfig {
  /** Absolute. */
  readonly dataDir: string;
  readonly portBase: number;
  readonly host: string;
  readonly startupTimeoutMs: number;
  readonly logLevel: string;
  readonly logFormat: "json" | "pretty";
  readonly shutdownGraceMs: number;
  /** Colour the output: on a terminal unless NO_COLOR is set, or when FORCE_COLOR is set. */
  readonly colour: boolean;
}

/**
 * Reads the launcher's settings from `env` ({@link devnetConfigSpec}); on a missing or bad value it
 * prints one line per problem to stderr and exits with code 78, through the runtime's config.
 */
export function loadDevnetConfigOrExit(
  env: NodeJS.ProcessEnv,
  environment: DevnetEnvironment,
): DevnetConfig {
  const config = loadConfigOrExit(devnetConfigSpec(environment), env);
  const dataDir = config.TESSERA_DATA_DIR;
  return Object.freeze({
    dataDir: isAbsolute(dataDir) ? dataDir : resolve(environment.cwd ?? process.cwd(), dataDir),
    portBase: config.TESSERA_PORT_BASE,
    host: config.TESSERA_HOST,
    startupTimeoutMs: config.TESSERA_STARTUP_TIMEOUT_MS,
    logLevel: config.LOG_LEVEL,
    logFormat: config.LOG_FORMAT,
    shutdownGraceMs: config.SHUTDOWN_GRACE_MS,
    colour: colourWanted(env, environment.isTTY),
  });
}

// The NO_COLOR / FORCE_COLOR conventions (no-color.org, force-color.org).
function colourWanted(env: NodeJS.ProcessEnv, isTTY: boolean): boolean {
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0") return true;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  return isTTY && env.TERM !== "dumb";
}
