import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { stripAnsi } from "./log-prefix.js";

/** How a child process ended. */
export interface ExitStatus {
  /** Exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** How a child process ended after {@link ServiceProcess.stop}. */
export interface StopStatus extends ExitStatus {
  /** True when it outlived the grace period and was killed with SIGKILL. */
  forced: boolean;
}

/** Options of {@link spawnServiceProcess}. */
export interface ServiceProcessOptions {
  name: string;
  /** The script node runs, e.g. `<repo>/services/wallet/dist/main.js`. */
  entry: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Where the child's stdout lines go, after `prefix`. */
  stdout: Writable;
  /** Where the child's stderr lines go, after `prefix`. */
  stderr: Writable;
  /** Decorates each line for the terminal (not for the log file). */
  prefix: (line: string) => string;
  /** Each line, without ANSI colours, is appended to this file. */
  logFile: string;
}

/** A running service child. */
export interface ServiceProcess {
  readonly name: string;
  readonly pid: number;
  /** Resolves once the process has exited and its output is written out. Never rejects. */
  readonly exited: Promise<ExitStatus>;
  /** The exit status once it has exited, else undefined. */
  readonly exitStatus: ExitStatus | undefined;
  /**
   * Sends SIGTERM, waits up to `graceMs` for the exit, then SIGKILLs it. Resolves with how it
   * ended (at once if it already had). Safe to call twice.
   */
  stop(graceMs: number): Promise<StopStatus>;
  /** SIGKILLs it now, if it is still running. */
  kill(): void;
}

/**
 * Starts `node <entry>` as a child in its own process group, so a Ctrl-C in the terminal reaches
 * only the launcher, which then stops the children in order. Its output is split into lines, each
 * written prefixed to the launcher's streams and appended plain to `logFile`.
 */
export function spawnServiceProcess(options: ServiceProcessOptions): ServiceProcess {
  const child = spawn(process.execPath, [options.entry], {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const logFile = createWriteStream(options.logFile, { flags: "a" });
  const pump = (input: Readable, output: Writable) => {
    const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
    lines.on("line", (line) => {
      output.write(`${options.prefix(line)}\n`);
      logFile.write(`${stripAnsi(line)}\n`);
    });
  };
  pump(child.stdout as Readable, options.stdout);
  pump(child.stderr as Readable, options.stderr);

  let exitStatus: ExitStatus | undefined;
  const exited = waitForClose(child).then(async (status) => {
    exitStatus = status;
    logFile.end();
    await once(logFile, "close").catch(() => undefined);
    return status;
  });
  let stopping: Promise<StopStatus> | undefined;

  // The whole process group: anything the service started goes with it.
  const kill = () => {
    if (exitStatus !== undefined || child.exitCode !== null || child.signalCode !== null) return;
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
  };
  return {
    name: options.name,
    pid: child.pid ?? -1,
    exited,
    get exitStatus() {
      return exitStatus;
    },
    stop(graceMs) {
      stopping ??= (async () => {
        if (exitStatus !== undefined) return { ...exitStatus, forced: false };
        child.kill("SIGTERM");
        let forced = false;
        const timer = setTimeout(() => {
          forced = true;
          kill();
        }, graceMs);
        const status = await exited;
        clearTimeout(timer);
        return { ...status, forced };
      })();
      return stopping;
    },
    kill,
  };
}

/** How long output may keep flowing after the exit (a grandchild holding the pipes). */
const OUTPUT_DRAIN_MS = 1000;

/**
 * Resolves once the child has exited and its output is drained: on "close", or OUTPUT_DRAIN_MS
 * after "exit" if something it started still holds its stdout/stderr open. A child that could not
 * be spawned at all ("error") is reported as exit code 127, like a shell does.
 */
function waitForClose(child: ChildProcess): Promise<ExitStatus> {
  return new Promise((resolve) => {
    let drainTimer: NodeJS.Timeout | undefined;
    child.once("close", (code, signal) => {
      clearTimeout(drainTimer);
      resolve({ code, signal });
    });
    child.once("error", () => resolve({ code: 127, signal: null }));
    child.once("exit", (code, signal) => {
      drainTimer = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        resolve({ code, signal });
      }, OUTPUT_DRAIN_MS);
    });
  });
}
