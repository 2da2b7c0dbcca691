// Test-only: a small service built at run time from a descriptor (not a proto file in proto/),
// with the behaviour the runtime tests need: echo, a slow handler, a stream.

import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { create, createFileRegistry, type Message } from "@bufbuild/protobuf";
import type { GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import {
  FileDescriptorProtoSchema,
  file_google_protobuf_timestamp,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
} from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { createLogger, type Logger } from "./logger.js";
import { type ServiceServer, type ServiceServerOptions, startServiceServer } from "./server.js";

const pkg = "tessera.runtime.test.v1";
const field = (name: string, number: number, type: Type, jsonName: string) => ({
  name,
  number,
  type,
  label: Label.OPTIONAL,
  jsonName,
});

const registry = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "tessera/runtime/test/v1/test.proto",
    package: pkg,
    syntax: "proto3",
    dependency: ["google/protobuf/timestamp.proto"],
    messageType: [
      {
        name: "EchoRequest",
        field: [
          field("text", 1, Type.STRING, "text"),
          field("sleep_ms", 2, Type.INT32, "sleepMs"),
          field("ignore_signal", 3, Type.BOOL, "ignoreSignal"),
          field("count", 4, Type.INT32, "count"),
        ],
      },
      {
        name: "EchoResponse",
        field: [
          field("text", 1, Type.STRING, "text"),
          field("timeout_ms", 2, Type.INT32, "timeoutMs"),
          {
            ...field("at", 3, Type.MESSAGE, "at"),
            typeName: ".google.protobuf.Timestamp",
          },
        ],
      },
    ],
    service: [
      {
        name: "TestService",
        method: [
          { name: "Echo", inputType: `.${pkg}.EchoRequest`, outputType: `.${pkg}.EchoResponse` },
          {
            name: "EchoStream",
            inputType: `.${pkg}.EchoRequest`,
            outputType: `.${pkg}.EchoResponse`,
            serverStreaming: true,
          },
        ],
      },
    ],
  }),
  // The import exercises reflection's transitive dependencies, as generated files do.
  (name) =>
    name === file_google_protobuf_timestamp.proto.name ? file_google_protobuf_timestamp : undefined,
);

export type EchoRequest = Message<`${typeof pkg}.EchoRequest`> & {
  text: string;
  sleepMs: number;
  ignoreSignal: boolean;
  count: number;
};
export type EchoResponse = Message<`${typeof pkg}.EchoResponse`> & {
  text: string;
  /** What ctx.timeoutMs() said when the handler started (-1: no deadline). */
  timeoutMs: number;
};
export const EchoRequestSchema = registry.getMessage(
  `${pkg}.EchoRequest`,
) as GenMessage<EchoRequest>;
export const EchoResponseSchema = registry.getMessage(
  `${pkg}.EchoResponse`,
) as GenMessage<EchoResponse>;
export const TestService = registry.getService(`${pkg}.TestService`) as GenService<{
  echo: { methodKind: "unary"; input: typeof EchoRequestSchema; output: typeof EchoResponseSchema };
  echoStream: {
    methodKind: "server_streaming";
    input: typeof EchoRequestSchema;
    output: typeof EchoResponseSchema;
  };
}>;
export const testFile = TestService.file;

/** Echo: answers `text` after `sleepMs` (ignoring the deadline if `ignoreSignal`). */
export function testRoutes(router: ConnectRouter, hooks: { onEcho?: () => void } = {}): void {
  router.service(TestService, {
    async echo(req, ctx) {
      hooks.onEcho?.();
      const timeoutMs = ctx.timeoutMs() ?? -1;
      if (req.sleepMs > 0) {
        await sleep(req.sleepMs, undefined, req.ignoreSignal ? {} : { signal: ctx.signal });
      }
      return { text: req.text, timeoutMs };
    },
    async *echoStream(req, ctx) {
      for (let i = 0; i < req.count; i++) {
        if (req.sleepMs > 0) await sleep(req.sleepMs, undefined, { signal: ctx.signal });
        yield { text: `${req.text} ${i}` };
      }
    },
  });
}

/** A logger whose JSON lines are kept in `lines`, for assertions. */
export function createCapturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line.trim() !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  return { logger: createLogger({ service: "test", level: "debug", destination }), lines };
}

/** Starts a runtime server with the test service on a free port on 127.0.0.1. */
export async function startTestServer(
  overrides: Partial<ServiceServerOptions> = {},
): Promise<{ server: ServiceServer; lines: Record<string, unknown>[] }> {
  const { logger, lines } = createCapturingLogger();
  const server = await startServiceServer({
    service: "runtime-test",
    logger,
    host: "127.0.0.1",
    port: 0,
    limits: { maxMessageBytes: 64 * 1024, defaultDeadlineMs: 5_000, maxDeadlineMs: 10_000 },
    shutdownGraceMs: 5_000,
    files: [testFile],
    routes: testRoutes,
    ...overrides,
  });
  return { server, lines };
}
