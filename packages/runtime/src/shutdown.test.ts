import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "@tessera/proto/grpc/health/v1/health_pb.js";
import { startTestServer, TestService, testRoutes } from "./test-service.js";

const tcpResources = () =>
  process.getActiveResourcesInfo().filter((r) => r === "TCPServerWrap" || r === "TCPSocketWrap");

/** Waits (bounded) for the client ends of closed connections to notice, then returns what is left. */
async function tcpResourcesAfterSettling(): Promise<string[]> {
  for (let i = 0; i < 100 && tcpResources().length > 0; i++) await sleep(20);
  return tcpResources();
}

describe("closing a server", () => {
  it("closes client sessions kept open, leaves no TCP handles and can be called twice", async () => {
    const { server } = await startTestServer();
    const h2 = createClient(TestService, createGrpcTransport({ baseUrl: server.url }));
    const h1 = createClient(
      TestService,
      createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }),
    );
    await h2.echo({ text: "keep the session open" });
    await h1.echo({ text: "keep the socket alive" });
    assert.ok(tcpResources().length > 0);

    const first = server.close();
    const second = server.close();
    await Promise.all([first, second]);
    await server.close();
    assert.deepEqual(await tcpResourcesAfterSettling(), []);
  });

  it("lets an in-flight call finish while draining, and reports NOT_SERVING", async () => {
    let started!: () => void;
    const handlerStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    const { server, lines } = await startTestServer({
      routes: (router) => testRoutes(router, { onEcho: () => started() }),
    });
    const transport = createGrpcTransport({ baseUrl: server.url });
    const watch = createClient(Health, transport).watch({ service: "" })[Symbol.asyncIterator]();
    const statuses: ServingStatus[] = [];
    const first = await watch.next();
    if (!first.done) statuses.push(first.value.status);
    const watching = (async () => {
      for (let r = await watch.next(); !r.done; r = await watch.next())
        statuses.push(r.value.status);
    })();

    const call = createClient(TestService, transport).echo({ text: "slow", sleepMs: 300 });
    await handlerStarted;
    const closing = server.close();
    assert.equal(server.health.getStatus(""), "NOT_SERVING");
    assert.equal((await call).text, "slow");
    await closing;
    await watching;
    assert.deepEqual(statuses, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    assert.ok(lines.some((l) => l.msg === "draining"));
    assert.deepEqual(await tcpResourcesAfterSettling(), []);
  });

  it("ends calls still running when the grace is over with unavailable", async () => {
    let started!: () => void;
    const handlerStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    const { server } = await startTestServer({
      shutdownGraceMs: 100,
      routes: (router) => testRoutes(router, { onEcho: () => started() }),
    });
    const client = createClient(TestService, createGrpcTransport({ baseUrl: server.url }));
    const call = client.echo({ text: "", sleepMs: 2_000, ignoreSignal: true });
    await handlerStarted;
    await server.close();
    const err = await call.then(
      () => assert.fail("expected the call to fail"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(err.code, Code.Unavailable);
  });

  it("is not held up by a call answered before its upload finished", {
    timeout: 10_000,
  }, async () => {
    const { server } = await startTestServer({ shutdownGraceMs: 60_000 });
    for (const httpVersion of ["2", "1.1"] as const) {
      const client = createClient(
        TestService,
        createConnectTransport({ baseUrl: server.url, httpVersion }),
      );
      const err = await client.echo({ text: "x".repeat(1_000_000) }).then(
        () => assert.fail("expected the call to fail"),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(err.code, Code.ResourceExhausted);
    }
    await server.close(); // with the upload still pending, this would wait out the grace
    assert.deepEqual(await tcpResourcesAfterSettling(), []);
  });

  it("on SIGTERM, a service process drains and exits 0", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/test-signal-server.ts"], {
      cwd: new URL("..", import.meta.url),
      stdio: ["ignore", "pipe", "inherit"],
    });
    const lines = createInterface({ input: child.stdout });
    const logged: Record<string, unknown>[] = [];
    let listening!: (url: string) => void;
    const url = new Promise<string>((resolve) => {
      listening = resolve;
    });
    lines.on("line", (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      logged.push(entry);
      if (entry.msg === "listening") listening(String(entry.url));
    });
    const client = createClient(Health, createGrpcTransport({ baseUrl: await url }));
    assert.equal((await client.check({ service: "" })).status, ServingStatus.SERVING);
    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    assert.equal(code, 0);
    assert.deepEqual(
      logged.map((l) => l.msg).filter((m) => m !== "rpc"),
      ["listening", "shutting down", "draining", "closed"],
    );
  });
});
