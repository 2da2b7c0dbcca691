import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient, createContextKey, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { ArrivalHook } from "./rpc-handler.js";
import type { ServiceServer } from "./server.js";
import { EchoRequestSchema, startTestServer, TestService } from "./test-service.js";

const echoPath = "/tessera.runtime.test.v1.TestService/Echo";
const tagHeader = "x-arrival-tag";
const arrivedKey = createContextKey<string | undefined>(undefined);

/** An interceptor with an arrival hook that records, per tag header, what happened to the call. */
function recorder() {
  const arrivals = new Map<string, () => void>();
  const releases = new Map<string, () => void>();
  const released = new Map<string, number>();
  const intercepted: string[] = [];
  const onArrival: ArrivalHook = (header, contextValues) => {
    const tag = header.get(tagHeader);
    if (tag === null) return undefined;
    contextValues.set(arrivedKey, tag);
    arrivals.get(tag)?.();
    return () => {
      released.set(tag, (released.get(tag) ?? 0) + 1);
      releases.get(tag)?.();
    };
  };
  const interceptor: Interceptor = (next) => (req) => {
    const tag = req.contextValues.get(arrivedKey);
    if (tag !== undefined) intercepted.push(tag);
    return next(req);
  };
  const waiter = (map: Map<string, () => void>) => (tag: string) =>
    new Promise<void>((resolve) => map.set(tag, resolve));
  return {
    interceptor: Object.assign(interceptor, { onArrival }),
    /** Register before sending: resolves once the call tagged `tag` arrived. */
    arrived: waiter(arrivals),
    /** Register before sending: resolves once the call's release ran. */
    released: waiter(releases),
    releaseCount: (tag: string) => released.get(tag) ?? 0,
    intercepted,
  };
}

/** Field 1 (string) claiming 100 bytes but carrying one: not decodable. */
const garbage = new Uint8Array([0x0a, 0x64, 0x41]);

describe("interceptor arrival hooks", () => {
  let server: ServiceServer;
  let rec: ReturnType<typeof recorder>;
  before(async () => {
    rec = recorder();
    ({ server } = await startTestServer({ interceptors: [rec.interceptor] }));
  });
  after(() => server.close());

  function rawPost(tag: string) {
    const session = http2.connect(server.url);
    const stream = session.request({
      ":method": "POST",
      ":path": echoPath,
      "content-type": "application/proto",
      [tagHeader]: tag,
    });
    stream.on("error", () => {});
    stream.resume();
    stream.on("close", () => session.close());
    return stream;
  }

  it("see a call, in the context values its interceptors get, and release it once it ends", async () => {
    const headers = { [tagHeader]: "ok" };
    const released = rec.released("ok");
    const echo = await createClient(
      TestService,
      createConnectTransport({ baseUrl: server.url, httpVersion: "2" }),
    ).echo({ text: "hi" }, { headers });
    assert.equal(echo.text, "hi");
    await released;
    assert.ok(rec.intercepted.includes("ok"));

    const streamReleased = rec.released("stream");
    const texts: string[] = [];
    const stream = createClient(TestService, createGrpcTransport({ baseUrl: server.url }));
    for await (const r of stream.echoStream(
      { text: "s", count: 2 },
      { headers: { [tagHeader]: "stream" } },
    )) {
      texts.push(r.text);
    }
    assert.deepEqual(texts, ["s 0", "s 1"]);
    await streamReleased;
  });

  it("see a unary call before its body is read, and release it when the client leaves", async () => {
    const arrived = rec.arrived("partial");
    const released = rec.released("partial");
    const stream = rawPost("partial");
    stream.write(
      toBinary(EchoRequestSchema, create(EchoRequestSchema, { text: "abcdef" })).subarray(0, 2),
    );
    await arrived;
    assert.ok(!rec.intercepted.includes("partial"), "interceptors have not run yet");
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await released;
    assert.ok(!rec.intercepted.includes("partial"));
  });

  it("release a call whose body does not decode (no interceptor ran)", async () => {
    const released = rec.released("garbage");
    rawPost("garbage").end(garbage);
    await released;
    assert.ok(!rec.intercepted.includes("garbage"));
  });

  it("run each release exactly once", async () => {
    await server.close();
    for (const tag of ["ok", "stream", "partial", "garbage"]) {
      assert.equal(rec.releaseCount(tag), 1, tag);
    }
  });
});
