import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, test } from "node:test";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { checkHealth, createClosableGrpcTransport, listServices } from "./grpc-clients.js";
import { type SpawnedService, spawnService } from "./spawn-service.js";

/** What {@link standaloneServiceSuite} checks for one service. */
export interface StandaloneServiceSuiteOptions {
  /** Absolute path of the service's compiled `dist/main.js`. */
  entry: string;
  /** The Tessera services the process must serve (reflection lists them, health knows them). */
  services: readonly DescService[];
  /** Environment for the process beyond PORT=0; peers' URLs, role, etc. */
  env?: Record<string, string>;
  /**
   * Whether the service has no behaviour yet, so that every unary RPC must answer
   * `unimplemented` (nothing pretends to work before its issue lands).
   */
  expectUnimplemented: boolean;
}

/**
 * Registers node:test cases that start one service alone, as its own process, and drive it from
 * the outside: health, reflection, unimplemented RPCs, a clean SIGTERM exit, and a refusal to
 * start on bad configuration that names the variable.
 */
export function standaloneServiceSuite(options: StandaloneServiceSuiteOptions): void {
  let running: SpawnedService;
  before(async () => {
    running = await spawnService({ entry: options.entry, env: options.env ?? {} });
  });
  after(async () => {
    await running?.stop("SIGKILL");
  });

  test("reflection lists its services next to health and reflection", async () => {
    const names = await listServices(running.url);
    for (const service of options.services)
      assert.ok(names.includes(service.typeName), names.join());
    assert.ok(names.includes("grpc.health.v1.Health"));
    assert.ok(names.includes("grpc.reflection.v1.ServerReflection"));
  });

  test("health reports SERVING for the server and each service", async () => {
    assert.equal(await checkHealth(running.url), "SERVING");
    for (const service of options.services) {
      assert.equal(await checkHealth(running.url, service.typeName), "SERVING");
    }
    const healthz = await fetch(`${running.url}/healthz`);
    assert.equal(healthz.status, 200);
  });

  if (options.expectUnimplemented) {
    test("every unary RPC answers unimplemented until its issue lands", async () => {
      const { transport, close } = createClosableGrpcTransport(running.url);
      try {
        for (const service of options.services) {
          const client = createClient(service, transport) as unknown as Record<
            string,
            (request: object) => Promise<unknown>
          >;
          for (const method of service.methods.filter((m) => m.methodKind === "unary")) {
            const call = client[method.localName];
            assert.ok(call, method.name);
            await assert.rejects(
              call({}),
              (error: unknown) =>
                ConnectError.from(error).code === Code.Unimplemented ||
                assert.fail(`${service.typeName}/${method.name}: ${String(error)}`),
            );
          }
        }
      } finally {
        close();
      }
    });
  }

  test("SIGTERM drains and exits 0", async () => {
    const code = await running.stop("SIGTERM");
    assert.equal(code, 0, running.lines.join("\n"));
  });

  test("bad configuration names every bad variable and exits without serving", async () => {
    const child = spawn(process.execPath, [options.entry], {
      env: { ...process.env, ...options.env, PORT: "not-a-port", MAX_DEADLINE_MS: "-5" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [code] = (await once(child, "exit")) as [number | null];
    assert.notEqual(code, 0);
    assert.match(stderr, /PORT/);
    assert.match(stderr, /MAX_DEADLINE_MS/);
  });
}
