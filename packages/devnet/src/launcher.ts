import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Writable } from "node:stream";
import { type DataDirLock, lockDataDir } from "./data-dir-lock.js";
import { waitUntilServing } from "./health-check.js";
import { createLinePrefixer, LAUNCHER_COLOUR } from "./log-prefix.js";
import { findTakenPorts } from "./port-check.js";
import { addressVariables } from "./service-keys.js";
import { type ExitStatus, type ServiceProcess, spawnServiceProcess } from "./service-process.js";
import {
  DEFAULT_PORT_BASE,
  type NetworkSettings,
  SERVICES,
  type ServiceDefinition,
  type ServiceName,
  serviceDataDir,
  serviceEntry,
  serviceEnvironment,
  serviceLogFile,
  servicePort,
  serviceUrl,
} from "./services.js";

/** How long after its own grace period a stopping child gets before it is killed. */
const KILL_MARGIN_MS = 2000;

/** Options of {@link createLauncher}. */
export interface LauncherOptions {
  /** The monorepo root; services run from `<repoRoot>/services/<name>/dist/main.js`. */
  repoRoot: string;
  /** Root of the network's files: `<dataDir>/<service>` for each service, `<dataDir>/logs`. */
  dataDir: string;
  /** Address the services bind and are dialled on; default "127.0.0.1" (this machine only). */
  host?: string;
  /** Service ports are base + offset (job-server 1 ... wallet 5); default 7000. */
  portBase?: number;
  /** LOG_LEVEL given to every service; default "info". */
  logLevel?: string;
  /** LOG_FORMAT given to every service; default "json". */
  logFormat?: "json" | "pretty";
  /** Colour the service prefixes (and let the services colour their pretty logs); default false. */
  colour?: boolean;
  /** How long each service may take to report SERVING; default 30000 ms. */
  startupTimeoutMs?: number;
  /** SHUTDOWN_GRACE_MS given to every service; it is SIGKILLed 2000 ms after that. Default 10000. */
  shutdownGraceMs?: number;
  /** Environment the children inherit before the launcher's own variables; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Receives the prefixed stdout of the services and the launcher's notices; default process.stdout. */
  stdout?: Writable;
  /** Receives the prefixed stderr of the services and the launcher's errors; default process.stderr. */
  stderr?: Writable;
  /** The services to run, in start order; default {@link SERVICES}. */
  services?: readonly ServiceDefinition[];
}

/** A service that is up and SERVING. */
export interface RunningService {
  readonly name: ServiceName;
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly dataDir: string;
  readonly logFile: string;
}

/** How one service ended. */
export interface ServiceOutcome {
  readonly name: string;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when it outlived its grace period and was SIGKILLed. */
  readonly forced: boolean;
  /**
   * It stopped as asked: exit code 0, or ended by the launcher's SIGTERM before it had installed
   * its own handler (a Ctrl-C during startup), in both cases within the grace period.
   */
  readonly clean: boolean;
}

/** How the whole network ended. */
export interface LauncherResult {
  /** "stopped": on request (stop()); "failed": it could not start, or a service died on its own. */
  readonly reason: "stopped" | "failed";
  /** Why it failed, naming the service when one is to blame. */
  readonly failure?: string;
  /** Every service that was started, in start order. */
  readonly services: readonly ServiceOutcome[];
  /** 0 when stopped on request and every service stopped cleanly; else 1. */
  readonly exitCode: 0 | 1;
}

/** Why start() failed; `service` names the culprit when there is one. */
export class LaunchError extends Error {
  constructor(
    message: string,
    readonly service?: ServiceName,
  ) {
    super(message);
    this.name = "LaunchError";
  }
}

/** The local network: five child processes, started healthy-first and stopped in reverse. */
export interface Launcher {
  /**
   * Checks that every service is built and every port free, then starts the services one by one,
   * each after the previous one reports SERVING on grpc.health.v1. Resolves with the running
   * services. Rejects with a {@link LaunchError} (and stops whatever it started) when a service is
   * not built, a port is taken, a service exits or does not become healthy in time, or stop() is
   * called first. Call it once.
   */
  start(): Promise<readonly RunningService[]>;
  /**
   * Stops the services in reverse start order: SIGTERM, then SIGKILL after the grace period.
   * Resolves with {@link finished}'s result. Safe to call twice, and during start().
   */
  stop(): Promise<LauncherResult>;
  /** SIGKILLs every service now (a second Ctrl-C); a pending stop() then completes. */
  kill(): void;
  /** Resolves once every service has stopped, whether by stop(), a failed start or a crash. */
  readonly finished: Promise<LauncherResult>;
}

/**
 * Creates the launcher of a local Tessera network. A service that exits on its own after start()
 * resolved stops the rest; the result then names it and has exit code 1.
 */
export function createLauncher(options: LauncherOptions): Launcher {
  const services = options.services ?? SERVICES;
  const network: NetworkSettings = {
    host: options.host ?? "127.0.0.1",
    portBase: options.portBase ?? DEFAULT_PORT_BASE,
    dataDir: options.dataDir,
    logLevel: options.logLevel ?? "info",
    logFormat: options.logFormat ?? "json",
    shutdownGraceMs: options.shutdownGraceMs ?? 10_000,
  };
  const startupTimeoutMs = options.startupTimeoutMs ?? 30_000;
  const colour = options.colour ?? false;
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const labelWidth = Math.max("devnet".length, ...services.map((s) => s.name.length));
  const launcherPrefix = createLinePrefixer({
    name: "devnet",
    width: labelWidth,
    ansiColour: LAUNCHER_COLOUR,
    colour,
  });
  const say = (text: string) => stdout.write(`${launcherPrefix(text)}\n`);
  const complain = (text: string) => stderr.write(`${launcherPrefix(text)}\n`);

  /** Started services, in start order. */
  const children: StartedChild[] = [];
  const startAbort = new AbortController();
  let state: "idle" | "starting" | "running" | "stopping" = "idle";
  // Set when a service dies while later ones are still starting.
  let startFailure: LaunchError | undefined;
  let startSettled: Promise<unknown> = Promise.resolve();
  let stopping: Promise<LauncherResult> | undefined;
  let lock: DataDirLock | undefined;
  let resolveFinished: (result: LauncherResult) => void = () => {};
  const finished = new Promise<LauncherResult>((resolve) => {
    resolveFinished = resolve;
  });
  // Children live in their own process groups; never leave them behind if the launcher dies.
  const killOnExit = () => {
    for (const { process: child } of children) child.kill();
  };

  async function launch(): Promise<RunningService[]> {
    const unbuilt = services.filter((s) => !existsSync(serviceEntry(s, options.repoRoot)));
    if (unbuilt.length > 0) {
      const files = unbuilt.map((s) => serviceEntry(s, options.repoRoot)).join(", ");
      throw new LaunchError(
        `not built: ${files}. Run \`pnpm build\` first (\`pnpm start\` builds before it launches).`,
        unbuilt[0]?.name,
      );
    }
    const taken = await findTakenPorts(
      network.host,
      services.map((s) => ({ port: servicePort(s, network.portBase), owner: s.name })),
    );
    if (taken.length > 0) {
      const ports = taken.map((t) => `${t.port} (${t.owner}): ${describeListenError(t.code)}`);
      throw new LaunchError(
        `cannot listen on ${network.host} port ${ports.join(", port ")}. Another devnet may be ` +
          "running: stop it, or move this network with TESSERA_PORT_BASE " +
          `(e.g. TESSERA_PORT_BASE=${network.portBase + 100}).`,
        taken[0]?.owner as ServiceName,
      );
    }
    mkdirSync(join(network.dataDir, "logs"), { recursive: true });
    lock = lockDataDir(network.dataDir);
    process.on("exit", killOnExit);

    const running: RunningService[] = [];
    for (const [index, service] of services.entries()) {
      if (startAbort.signal.aborted) break;
      const url = serviceUrl(service, network.host, network.portBase);
      const dataDir = serviceDataDir(service, network.dataDir);
      const logFile = serviceLogFile(service, network.dataDir);
      mkdirSync(dataDir, { recursive: true });
      say(`starting ${service.name} on ${url}`);
      const startedAt = performance.now();
      const child = spawnServiceProcess({
        name: service.name,
        entry: serviceEntry(service, options.repoRoot),
        cwd: join(options.repoRoot, "services", service.binary),
        env: {
          ...(options.env ?? process.env),
          ...(colour && { FORCE_COLOR: "1" }),
          ...serviceEnvironment(service, network, services),
          ...(await addressVariables(service, services, network.dataDir)),
        },
        stdout,
        stderr,
        prefix: createLinePrefixer({ name: service.name, width: labelWidth, index, colour }),
        logFile,
      });
      const started: StartedChild = { service, process: child, logFile };
      children.push(started);
      void child.exited.then((status) => onChildExit(started, status));
      await waitForServing(started, url);
      say(`${service.name} is serving (${Math.round(performance.now() - startedAt)} ms)`);
      running.push({
        name: service.name,
        url,
        port: servicePort(service, network.portBase),
        pid: child.pid,
        dataDir,
        logFile,
      });
    }
    if (startFailure) throw startFailure;
    if (startAbort.signal.aborted) throw new LaunchError("stopped before the network was ready");
    return running;
  }

  async function waitForServing({ service, process: child, logFile }: StartedChild, url: string) {
    const exitedEarly = child.exited.then((status) => {
      throw new LaunchError(
        `${service.name} exited before it was serving (${describeExit(status)}); see its ` +
          `output above or in ${logFile}`,
        service.name,
      );
    });
    const healthy = waitUntilServing(url, {
      timeoutMs: startupTimeoutMs,
      signal: startAbort.signal,
    });
    try {
      await Promise.race([healthy, exitedEarly]);
    } catch (error) {
      if (error instanceof LaunchError) throw error;
      if (startFailure) throw startFailure;
      if (startAbort.signal.aborted) throw new LaunchError("stopped before the network was ready");
      const reason = error instanceof Error ? error.message : String(error);
      throw new LaunchError(`${service.name} did not become healthy: ${reason}`, service.name);
    } finally {
      // Neither loser of the race may surface as an unhandled rejection.
      exitedEarly.catch(() => undefined);
      healthy.catch(() => undefined);
    }
  }

  function onChildExit({ service, logFile }: StartedChild, status: ExitStatus) {
    const failure = `${service.name} exited unexpectedly (${describeExit(status)})`;
    if (state === "starting") {
      // start() reports it, then stops the rest.
      startFailure ??= new LaunchError(
        `${failure} before the network was ready; see its output above or in ${logFile}`,
        service.name,
      );
      startAbort.abort();
      return;
    }
    // While stopping, exits are expected.
    if (state !== "running") return;
    complain(`${failure}; stopping the network`);
    void stopAll("failed", failure);
  }

  function stopAll(reason: LauncherResult["reason"], failure?: string): Promise<LauncherResult> {
    stopping ??= (async () => {
      state = "stopping";
      startAbort.abort();
      await startSettled;
      const killAfterMs = network.shutdownGraceMs + KILL_MARGIN_MS;
      const outcomes: ServiceOutcome[] = [];
      for (const { service, process: child } of [...children].reverse()) {
        if (child.exitStatus === undefined) say(`stopping ${service.name}`);
        const status = await child.stop(killAfterMs);
        if (status.forced) {
          complain(`${service.name} was still running after ${killAfterMs} ms; killed it`);
        }
        const clean = !status.forced && (status.code === 0 || status.signal === "SIGTERM");
        outcomes.unshift({ name: service.name, ...status, clean });
      }
      lock?.release();
      process.off("exit", killOnExit);
      const clean = reason === "stopped" && outcomes.every((o) => o.clean);
      const result: LauncherResult = {
        reason,
        ...(failure !== undefined && { failure }),
        services: outcomes,
        exitCode: clean ? 0 : 1,
      };
      resolveFinished(result);
      return result;
    })();
    return stopping;
  }

  return {
    async start() {
      if (state !== "idle") throw new Error("start() can only be called once");
      state = "starting";
      const launching = launch();
      startSettled = launching.catch(() => undefined);
      try {
        const running = await launching;
        if (state === "starting") state = "running";
        return running;
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        void stopAll(stopping ? "stopped" : "failed", message);
        throw error instanceof LaunchError ? error : new LaunchError(message);
      }
    },
    stop: () => stopAll("stopped"),
    kill: killOnExit,
    finished,
  };
}

/** A service process the launcher started. */
interface StartedChild {
  readonly service: ServiceDefinition;
  readonly process: ServiceProcess;
  readonly logFile: string;
}

function describeListenError(code: string): string {
  if (code === "EADDRINUSE") return "already in use";
  if (code === "EACCES") return "permission denied";
  if (code === "EADDRNOTAVAIL") return "no such local address";
  return code;
}

/** "exit code 1", "signal SIGKILL". */
export function describeExit(status: ExitStatus): string {
  return status.signal !== null ? `signal ${status.signal}` : `exit code ${status.code}`;
}
