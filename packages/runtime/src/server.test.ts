import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "@tessera/proto/grpc/health/v1/health_pb.js";
import {
  ServerReflection,
  type ServerReflectionRequestSchema,
} from "@tessera/proto/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "@tessera/proto/grpc/reflection/v1alpha/reflection_pb.js";
import type { ServiceServer } from "./server.js";
import { startTestServer, TestService, testRoutes } from "./test-service.js";

const echoPath = "/tessera.runtime.test.v1.TestService/Echo";

function transports(baseUrl: string): Record<string, Transport> {
  return {
    "Connect over HTTP/2": createConnectTransport({ baseUrl, httpVersion: "2" }),
    "Connect over HTTP/1.1": createConnectTransport({ baseUrl, httpVersion: "1.1" }),
    "gRPC over HTTP/2": createGrpcTransport({ baseUrl }),
    "gRPC-Web over HTTP/1.1": createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
    "gRPC-Web over HTTP/2": createGrpcWebTransport({ baseUrl, httpVersion: "2" }),
  };
}

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail("expected the call to fail");
}

/** Sends one raw HTTP/2 request and returns status, body and trailers. */
async function rawH2(
  url: string,
  headers: http2.OutgoingHttpHeaders,
  body: Uint8Array,
): Promise<{ status: number; body: Buffer; trailers: http2.IncomingHttpHeaders }> {
  const session = http2.connect(url);
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ...headers });
      const chunks: Buffer[] = [];
      let status = 0;
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        trailers = h; // a trailers-only response carries the status here
      });
      stream.on("trailers", (t) => {
        trailers = t;
      });
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => resolve({ status, body: Buffer.concat(chunks), trailers }));
      stream.on("error", reject);
      stream.end(body);
    });
  } finally {
    session.close();
  }
}

/** A gRPC length-prefixed message. */
function envelope(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + data.length);
  new DataView(out.buffer).setUint32(1, data.length);
  out.set(data, 5);
  return out;
}

/** Field 1 (string) claiming 100 bytes but carrying one: not decodable. */
const garbage = new Uint8Array([0x0a, 0x64, 0x41]);

describe("a runtime server", () => {
  let server: ServiceServer;
  let lines: Record<string, unknown>[];
  before(async () => {
    ({ server, lines } = await startTestServer());
  });
  after(() => server.close());

  it("answers Connect, gRPC and gRPC-Web over HTTP/2 and HTTP/1.1 on one port", async () => {
    for (const [name, transport] of Object.entries(transports(server.url))) {
      const echo = await createClient(TestService, transport).echo({ text: name });
      assert.equal(echo.text, name);
      const health = await createClient(Health, transport).check({ service: "" });
      assert.equal(health.status, ServingStatus.SERVING, name);
    }
  });

  it("streams from the server", async () => {
    for (const [name, transport] of Object.entries(transports(server.url))) {
      const texts: string[] = [];
      for await (const res of createClient(TestService, transport).echoStream({
        text: "n",
        count: 3,
      })) {
        texts.push(res.text);
      }
      assert.deepEqual(texts, ["n 0", "n 1", "n 2"], name);
    }
  });

  it("reports health: Check for each service and the first Watch message", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    const check = await client.check({ service: "tessera.runtime.test.v1.TestService" });
    assert.equal(check.status, ServingStatus.SERVING);
    const unknown = await rejection(client.check({ service: "no.such.Service" }));
    assert.equal(unknown.code, Code.NotFound);

    const abort = new AbortController();
    for await (const res of client.watch({ service: "" }, { signal: abort.signal })) {
      assert.equal(res.status, ServingStatus.SERVING);
      break;
    }
    abort.abort();
  });

  it("serves /healthz and /metrics with the call just made", async () => {
    const healthz = await fetch(`${server.url}/healthz`);
    assert.equal(healthz.status, 200);
    assert.equal(await healthz.text(), "ok");

    const client = createClient(
      TestService,
      createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }),
    );
    await client.echo({ text: "counted" });
    await rejection(client.echo({ text: "x".repeat(100_000) }));
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const counter = (code: string) =>
      metrics
        .split("\n")
        .find(
          (l) =>
            l.startsWith("rpc_server_requests_total{") &&
            l.includes('service="tessera.runtime.test.v1.TestService"') &&
            l.includes('method="Echo"') &&
            l.includes(`code="${code}"`),
        );
    assert.match(counter("ok") ?? "", /server="runtime-test".* [1-9]\d*$/);
    assert.match(counter("resource_exhausted") ?? "", / [1-9]\d*$/);
    assert.match(metrics, /^rpc_server_duration_seconds_bucket\{/m);
    assert.match(metrics, /^process_cpu_user_seconds_total/m);
  });

  it("logs one line per call, with its outcome and without its payload", async () => {
    const secret = "do-not-log-this-payload";
    const client = createClient(TestService, createGrpcTransport({ baseUrl: server.url }));
    await client.echo({ text: secret });
    const line = lines.findLast((l) => l.procedure === echoPath);
    assert.ok(line);
    assert.equal(line.code, "ok");
    assert.equal(line.protocol, "grpc");
    assert.equal(typeof line.durationMs, "number");
    assert.match(String(line.peer), /^127\.0\.0\.1:\d+$/);
    assert.equal(line.service, "test");
    assert.ok(!JSON.stringify(lines).includes(secret));
  });

  it("serves reflection v1 and v1alpha with the files and their imports", async () => {
    const transport = createGrpcTransport({ baseUrl: server.url });
    async function* ask(...requests: MessageInitShape<typeof ServerReflectionRequestSchema>[]) {
      for (const r of requests) yield r;
    }
    const answers = [];
    for await (const res of createClient(ServerReflection, transport).serverReflectionInfo(
      ask(
        { messageRequest: { case: "listServices", value: "" } },
        {
          messageRequest: {
            case: "fileContainingSymbol",
            value: "tessera.runtime.test.v1.TestService.Echo",
          },
        },
        { messageRequest: { case: "fileByFilename", value: "grpc/health/v1/health.proto" } },
        { messageRequest: { case: "fileByFilename", value: "no/such.proto" } },
      ),
    )) {
      answers.push(res.messageResponse);
    }
    const [list, symbol, byName, missing] = answers;
    assert.equal(list?.case, "listServicesResponse");
    assert.deepEqual(
      list.value.service.map((s) => s.name),
      [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "tessera.runtime.test.v1.TestService",
      ],
    );
    assert.equal(symbol?.case, "fileDescriptorResponse");
    const files = symbol.value.fileDescriptorProto.map((b) =>
      fromBinary(FileDescriptorProtoSchema, b),
    );
    assert.deepEqual(
      files.map((f) => f.name),
      ["tessera/runtime/test/v1/test.proto", "google/protobuf/timestamp.proto"],
    );
    assert.equal(files[0]?.service[0]?.method[0]?.name, "Echo");
    assert.equal(byName?.case, "fileDescriptorResponse");
    assert.equal(
      fromBinary(FileDescriptorProtoSchema, byName.value.fileDescriptorProto[0] ?? new Uint8Array())
        .package,
      "grpc.health.v1",
    );
    assert.equal(missing?.case, "errorResponse");
    assert.equal(missing.value.errorCode, Code.NotFound);

    for await (const res of createClient(ServerReflectionV1alpha, transport).serverReflectionInfo(
      ask({ messageRequest: { case: "listServices", value: "" } }) as AsyncIterable<never>,
    )) {
      assert.equal(res.messageResponse.case, "listServicesResponse");
    }
  });

  it("rejects a message above maxMessageBytes with resource_exhausted", async () => {
    for (const [name, transport] of Object.entries(transports(server.url))) {
      const err = await rejection(
        createClient(TestService, transport).echo({ text: "x".repeat(100_000) }),
      );
      assert.equal(err.code, Code.ResourceExhausted, name);
    }
  });

  it("answers an undecodable request with invalid_argument, in every protocol", async () => {
    const connectProto = await fetch(`${server.url}${echoPath}`, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: garbage,
    });
    assert.equal(connectProto.status, 400);
    assert.equal(((await connectProto.json()) as { code: string }).code, "invalid_argument");

    const connectJson = await fetch(`${server.url}${echoPath}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    assert.equal(((await connectJson.json()) as { code: string }).code, "invalid_argument");

    const grpc = await rawH2(
      server.url,
      { ":path": echoPath, "content-type": "application/grpc", te: "trailers" },
      envelope(garbage),
    );
    assert.equal(grpc.trailers["grpc-status"], String(Code.InvalidArgument));

    const grpcWeb = await rawH2(
      server.url,
      { ":path": echoPath, "content-type": "application/grpc-web+proto" },
      envelope(garbage),
    );
    assert.match(grpcWeb.body.subarray(5).toString(), /grpc-status: 3\r\n/);

    const line = lines.findLast((l) => l.procedure === echoPath);
    assert.equal(line?.code, "invalid_argument");
  });

  it("gives the handler a deadline: the default when the client sets none, clamped to the maximum", async () => {
    for (const [name, transport] of Object.entries(transports(server.url))) {
      const client = createClient(TestService, transport);
      const unset = await client.echo({ text: "" });
      assert.ok(unset.timeoutMs > 0 && unset.timeoutMs <= 5_000, `${name}: ${unset.timeoutMs}`);
      const long = await client.echo({ text: "" }, { timeoutMs: 60_000 });
      assert.ok(long.timeoutMs > 5_000 && long.timeoutMs <= 10_000, `${name}: ${long.timeoutMs}`);
      const short = await client.echo({ text: "" }, { timeoutMs: 4_000 });
      assert.ok(short.timeoutMs > 0 && short.timeoutMs <= 4_000, `${name}: ${short.timeoutMs}`);
    }
  });

  it("answers a CORS preflight from a browser origin", async () => {
    const preflight = await fetch(`${server.url}${echoPath}`, {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,connect-protocol-version,x-grpc-web",
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "https://app.example");
    assert.match(preflight.headers.get("access-control-allow-methods") ?? "", /POST/);
    const allowed = (preflight.headers.get("access-control-allow-headers") ?? "").toLowerCase();
    for (const h of ["content-type", "connect-protocol-version", "x-grpc-web", "grpc-timeout"]) {
      assert.ok(allowed.includes(h), h);
    }

    const call = await fetch(`${server.url}${echoPath}`, {
      method: "POST",
      headers: { origin: "https://app.example", "content-type": "application/json" },
      body: JSON.stringify({ text: "hi" }),
    });
    assert.equal(call.status, 200);
    assert.equal(call.headers.get("access-control-allow-origin"), "https://app.example");
    assert.match(call.headers.get("access-control-expose-headers") ?? "", /Grpc-Status/i);
  });

  it("tells HTTP/1.1 from HTTP/2 even when the first packet is a single byte", async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(server.port, "127.0.0.1", () => {
        socket.write("P");
        setImmediate(() =>
          socket.write("OST /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
      });
      let data = "";
      socket.on("data", (c: Buffer) => {
        data += c.toString();
      });
      socket.on("end", () => resolve(data));
      socket.on("error", reject);
    });
    assert.match(reply, /^HTTP\/1\.1 404/);
  });
});

describe("a runtime server with a short default deadline and one allowed origin", () => {
  let server: ServiceServer;
  let lines: Record<string, unknown>[];
  before(async () => {
    ({ server, lines } = await startTestServer({
      limits: { maxMessageBytes: 1024, defaultDeadlineMs: 200, maxDeadlineMs: 400 },
      corsOrigins: ["https://app.example"],
      routes: (router) => testRoutes(router),
    }));
  });
  after(() => server.close());

  it("ends a call at its deadline with deadline_exceeded, even if the handler ignores it", async () => {
    for (const [name, transport] of Object.entries(transports(server.url))) {
      const client = createClient(TestService, transport);
      const err = await rejection(client.echo({ text: "", sleepMs: 1_500, ignoreSignal: true }));
      assert.equal(err.code, Code.DeadlineExceeded, name);
      const honest = await rejection(client.echo({ text: "", sleepMs: 1_500 }));
      assert.equal(honest.code, Code.DeadlineExceeded, name);
    }
    assert.equal(lines.findLast((l) => l.procedure === echoPath)?.code, "deadline_exceeded");
  });

  it("refuses a preflight from an origin that is not allowed", async () => {
    const preflight = await fetch(`${server.url}${echoPath}`, {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    assert.equal(preflight.status, 403);
    assert.equal(preflight.headers.get("access-control-allow-origin"), null);
  });
});
