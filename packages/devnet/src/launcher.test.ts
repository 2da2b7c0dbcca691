import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { checkHealth } from "./health-check.js";
import { createLauncher, LaunchError } from "./launcher.js";
import { SERVICES, servicePort, serviceUrl } from "./services.js";

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const mainModule = join(packageDir, "src", "main.ts");
// A hang guard for the harness, not a timed assertion.
const TEST_TIMEOUT_MS = 120_000;

/** The launcher running as `pnpm start` would run it, in its own data dir and port range. */
interface DevnetRun {
  readonly child: ChildProcess;
  readonly dataDir: string;
  readonly portBase: number;
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
  /** Resolves when the output matches `pattern`; rejects if the launcher exits first. */
  waitFor(pattern: RegExp): Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const tempDirs: string[] = [];
after(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function freePortBase(): number {
  // 17000-26990 in steps of 10: far from the default 7001-7005 and from other test runs.
  return 17_000 + Math.floor(Math.random() * 1000) * 10;
}

function startDevnet(portBase = freePortBase()): DevnetRun {
  const dataDir = mkdtempSync(join(tmpdir(), "tessera-devnet-test-"));
  tempDirs.push(dataDir);
  const child = spawn(process.execPath, ["--import", "tsx", mainModule], {
    cwd: packageDir,
    env: {
      ...process.env,
      TESSERA_DATA_DIR: dataDir,
      TESSERA_PORT_BASE: String(portBase),
      SHUTDOWN_GRACE_MS: "5000",
      LOG_LEVEL: "info",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  const waiters = new Set<() => void>();
  const collect = (chunk: Buffer) => {
    text += chunk.toString("utf8");
    for (const check of waiters) check();
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  return {
    child,
    dataDir,
    portBase,
    output: () => text,
    waitFor(pattern) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!pattern.test(text)) return;
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
        check();
        void exited.then(({ code, signal }) => {
          if (!waiters.has(check)) return;
          waiters.delete(check);
          reject(new Error(`launcher exited (${code ?? signal}) before ${pattern}:\n${text}`));
        });
      });
    },
    exited,
  };
}

function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Endpoints of the validators a registry lists (an unsigned read, as any client could make). */
async function listValidatorUrls(registryUrl: string): Promise<string[]> {
  const session = new Http2SessionManager(registryUrl);
  try {
    const client = createClient(
      RegistryService,
      createGrpcTransport({ baseUrl: registryUrl, sessionManager: session }),
    );
    const { validators } = await client.listValidators({
      protocolVersion: { major: 1, minor: 0, patch: 0 },
    });
    return validators.map((v) => v.endpoint?.url ?? "").sort();
  } finally {
    session.abort();
  }
}

function pidOf(run: DevnetRun, name: string): number {
  const row = new RegExp(`^\\s+${name}\\s+http://\\S+\\s+(\\d+)`, "m").exec(run.output());
  assert.ok(row?.[1], `no row for ${name} in the ready table:\n${run.output()}`);
  return Number(row[1]);
}

describe("devnet launcher (pnpm start)", { timeout: TEST_TIMEOUT_MS }, () => {
  test("starts every service healthy, validators registered, and Ctrl-C stops them all with exit 0", async () => {
    const run = startDevnet();
    await run.waitFor(/tessera devnet ready/);

    for (const service of SERVICES) {
      const url = serviceUrl(service, "127.0.0.1", run.portBase);
      assert.equal(await checkHealth(url), "SERVING", `${service.name} gRPC health`);
      const response = await fetch(`${url}/healthz`);
      assert.equal(response.status, 200, `${service.name} GET /healthz`);
      await response.body?.cancel();
    }
    assert.match(run.output(), /buf curl --list-services http:\/\/127\.0\.0\.1:\d+/);
    const registry = SERVICES.find((s) => s.name === "registry");
    assert.ok(registry);
    const validators = await listValidatorUrls(serviceUrl(registry, "127.0.0.1", run.portBase));
    assert.deepEqual(
      validators,
      SERVICES.filter((s) => s.env.REGISTRY_ROLE === "validator")
        .map((s) => serviceUrl(s, "127.0.0.1", run.portBase))
        .sort(),
    );

    run.child.kill("SIGINT");
    const { code } = await run.exited;
    assert.equal(code, 0, run.output());
    assert.match(
      run.output(),
      new RegExp(`tessera devnet stopped: ${SERVICES.length} services exited cleanly`),
    );

    for (const service of SERVICES) {
      const port = servicePort(service, run.portBase);
      assert.equal(await isListening(port), false, `${service.name} still listens on ${port}`);
      const logFile = join(run.dataDir, "logs", `${service.name}.log`);
      assert.ok(statSync(logFile).size > 0, `${logFile} is empty`);
      assert.ok(existsSync(join(run.dataDir, service.name)), `no data dir for ${service.name}`);
    }
    // Log files hold the services' own lines, without the terminal prefix.
    assert.doesNotMatch(
      readFileSync(join(run.dataDir, "logs", "wallet.log"), "utf8"),
      /^wallet +\|/m,
    );
    assert.equal(existsSync(join(run.dataDir, "devnet.pid")), false, "data dir lock left behind");
  });

  test("Ctrl-C while the network is still starting stops what started, with exit 0", async () => {
    const run = startDevnet();
    await run.waitFor(/starting job-server/);

    run.child.kill("SIGINT");
    const { code } = await run.exited;

    assert.equal(code, 0, run.output());
    assert.doesNotMatch(run.output(), /tessera devnet ready/);
    for (const service of SERVICES) {
      const port = servicePort(service, run.portBase);
      assert.equal(await isListening(port), false, `${service.name} still listens on ${port}`);
    }
  });

  test("a service that dies stops the rest and the launcher exits non-zero naming it", async () => {
    const run = startDevnet();
    await run.waitFor(/tessera devnet ready/);

    process.kill(pidOf(run, "gateway"), "SIGKILL");
    const { code } = await run.exited;

    assert.equal(code, 1);
    assert.match(run.output(), /gateway exited unexpectedly \(signal SIGKILL\)/);
    for (const service of SERVICES) {
      const port = servicePort(service, run.portBase);
      assert.equal(await isListening(port), false, `${service.name} still listens on ${port}`);
    }
  });

  test("a taken port fails fast, names the port and its service, and starts nothing", async () => {
    const portBase = freePortBase();
    const wallet = SERVICES.find((s) => s.name === "wallet");
    assert.ok(wallet);
    const squatter = createServer();
    await new Promise<void>((resolve) =>
      squatter.listen(servicePort(wallet, portBase), "127.0.0.1", resolve),
    );
    try {
      const run = startDevnet(portBase);
      const { code } = await run.exited;

      assert.equal(code, 1);
      assert.match(run.output(), new RegExp(`${servicePort(wallet, portBase)} \\(wallet\\)`));
      assert.match(run.output(), /TESSERA_PORT_BASE/);
      assert.doesNotMatch(run.output(), /starting /);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });

  test("a service that is not built is named before anything starts", async () => {
    const emptyRepo = mkdtempSync(join(tmpdir(), "tessera-devnet-unbuilt-"));
    tempDirs.push(emptyRepo);
    const launcher = createLauncher({
      repoRoot: emptyRepo,
      dataDir: join(emptyRepo, ".tessera-data"),
      portBase: freePortBase(),
    });

    await assert.rejects(launcher.start(), (error: unknown) => {
      assert.ok(error instanceof LaunchError);
      assert.match(error.message, /services\/wallet\/dist\/main\.js/);
      assert.match(error.message, /pnpm build/);
      return true;
    });
    const result = await launcher.finished;
    assert.equal(result.exitCode, 1);
    assert.deepEqual(result.services, []);
  });
});
