import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { generateKeyPair } from "@tessera/identity/keys";
import { NodeRecordSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { createNodeBook } from "./node-book.js";
import { createTaskStream } from "./task-stream.js";

const record = () => create(NodeRecordSchema, { address: generateKeyPair().address });
const stream = () => createTaskStream({ modelIds: [], maxBatchSize: 1 });

test("a node is gone after the timeout without heartbeats, and only once", () => {
  const book = createNodeBook({ timeoutMs: 1000 });
  const node = book.register(record(), new Map(), 0);
  book.attachStream(node, stream(), new Error("replaced"));
  book.heartbeat(node, undefined, 500);
  assert.deepEqual(book.takeGone(1400), []);
  assert.equal(book.isOnline(node, 1400), true);
  assert.deepEqual(
    book.takeGone(1500).map((n) => n.address),
    [node.address],
  );
  assert.equal(book.isOnline(node, 1500), false);
  assert.deepEqual(book.takeGone(3000), [], "reported once");
  book.heartbeat(node, undefined, 3000);
  assert.equal(book.isOnline(node, 3000), true, "a node with a stream comes back by beating");
});

test("a beating node whose stream stays closed for the timeout is gone", () => {
  const book = createNodeBook({ timeoutMs: 1000 });
  const node = book.register(record(), new Map(), 0);
  const s = stream();
  book.attachStream(node, s, new Error("replaced"));
  book.detachStream(node, s, 100);
  for (let t = 200; t < 1100; t += 200) book.heartbeat(node, undefined, t);
  assert.deepEqual(book.takeGone(1050), []);
  assert.equal(book.takeGone(1100).length, 1);
  book.heartbeat(node, undefined, 1200);
  assert.equal(book.isOnline(node, 1200), false, "beats alone do not bring a streamless node back");
  book.attachStream(node, stream(), new Error("replaced"));
  assert.equal(book.isOnline(node, 1200), true);
});

test("a newer stream replaces the older, which ends with the given error", async () => {
  const book = createNodeBook({ timeoutMs: 1000 });
  const node = book.register(record(), new Map(), 0);
  const older = stream();
  book.attachStream(node, older, new Error("replaced by a newer stream"));
  const newer = stream();
  book.attachStream(node, newer, new Error("replaced by a newer stream"));
  assert.equal(older.open, false);
  await assert.rejects(older.deliveries(new AbortController().signal).next(), /replaced/);
  book.detachStream(node, older, 10);
  assert.equal(node.stream, newer, "closing the older stream does not detach the newer");
});
