import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { ReceiveTaskResponseSchema } from "@tessera/proto/tessera/gateway/v1/gateway_compute_service_pb.js";
import { createTaskStream } from "./task-stream.js";

const delivery = (requestId: string) =>
  create(ReceiveTaskResponseSchema, { tasks: [{ requestId }] });

test("deliveries come out in order; after close, what was not handed out is taken back", async () => {
  const stream = createTaskStream({ modelIds: [], maxBatchSize: 2 });
  const reader = stream.deliveries(new AbortController().signal);
  assert.equal(stream.send(delivery("a")), true);
  assert.equal(stream.send(delivery("b")), true);
  assert.equal((await reader.next()).value?.tasks[0]?.requestId, "a");
  stream.close();
  assert.equal((await reader.next()).done, true);
  assert.equal(stream.send(delivery("c")), false, "a closed stream takes nothing");
  assert.deepEqual(
    stream.takeUndelivered().map((d) => d.tasks[0]?.requestId),
    ["b"],
  );
});

test("a waiting reader ends when the caller goes away", async () => {
  const stream = createTaskStream({ modelIds: [], maxBatchSize: 1 });
  const caller = new AbortController();
  const next = stream.deliveries(caller.signal).next();
  caller.abort();
  assert.equal((await next).done, true);
});
