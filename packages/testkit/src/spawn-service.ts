import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";

/** Options for {@link spawnService}. */
export interface SpawnServiceOptions {
  /** Absolute path of the service's compiled entry point (its `dist/main.js`). */
  entry: string;
  /** Extra environment; `PORT` defaults to "0" (an ephemeral port) and `LOG_FORMAT` to "json". */
  env?: Record<string, string>;
  /** How long to wait for the "listening" log line; default 15000 ms. */
  startTimeoutMs?: number;
}

/** A service process started by {@link spawnService}. */
export interface SpawnedService {
  /** Base URL the service announced, e.g. "http://127.0.0.1:41234". */
  readonly url: string;
  readonly child: ChildProcess;
  /** Every log line the process wrote so far (stdout and stderr). */
  readonly lines: readonly string[];
  /** Sends SIGTERM and resolves with the exit code once the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts a service as its own process, exactly as a user would (`node dist/main.js` with an
 * environment), and resolves once it logs the JSON line carrying its `url`.
 * Rejects with the collected output if the process exits or stays silent past the timeout.
 */
export async function spawnService(options: SpawnServiceOptions): Promise<SpawnedService> {
  const child = spawn(process.execPath, [options.entry], {
    env: { ...process.env, PORT: "0", LOG_FORMAT: "json", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`no "listening" line within timeout; output:\n${lines.join("\n")}`));
    }, options.startTimeoutMs ?? 15_000);
    const onLine = (line: string) => {
      lines.push(line);
      const announced = listeningUrl(line);
      if (announced !== undefined) {
        clearTimeout(timer);
        resolve(announced);
      }
    };
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", onLine);
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", onLine);
    void exited.then(([code, signal]) => {
      clearTimeout(timer);
      reject(
        new Error(`exited early (code ${code}, signal ${signal}); output:\n${lines.join("\n")}`),
      );
    });
  });
  return {
    url,
    child,
    lines,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const [code] = await exited;
      return code;
    },
  };
}

function listeningUrl(line: string): string | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const record = JSON.parse(line) as { url?: unknown; msg?: unknown };
    if (typeof record.url === "string" && String(record.msg).includes("listening")) {
      return record.url;
    }
  } catch {
    // Not a JSON log line; keep waiting.
  }
  return undefined;
}

/**
 * The address a service logged when it loaded its key (the "key loaded" line every keyed service
 * writes at start); clients sign their requests to it.
 */
export function loggedAddress(service: SpawnedService): string {
  for (const line of service.lines) {
    if (!line.startsWith("{")) continue;
    const record = JSON.parse(line) as { msg?: string; address?: string };
    if (record.msg === "key loaded" && record.address) return record.address;
  }
  throw new Error(`no "key loaded" line:\n${service.lines.join("\n")}`);
}
