import assert from "node:assert/strict";
import { test } from "node:test";
import { BatcherClosedError, createDynamicBatcher } from "./dynamic-batcher.js";
import { type RawTensor, TensorError, typedView } from "./tensors.js";

function rowsTensor(name: string, rows: number[][]): RawTensor {
  const width = rows[0]?.length ?? 0;
  return {
    name,
    dtype: "float32",
    shape: [rows.length, width],
    data: new Uint8Array(Float32Array.from(rows.flat()).buffer),
  };
}

function values(t: RawTensor | undefined): number[] {
  assert.ok(t);
  return Array.from(typedView(t) as Float32Array);
}

/** A deterministic model: output row = [x0 + x1, x0 - x1, 10 · x0] and it records each batch's rows. */
function recordingModel() {
  const batches: number[] = [];
  return {
    batches,
    async runBatch(inputs: readonly RawTensor[]): Promise<RawTensor[]> {
      const x = values(inputs[0]);
      const rows = inputs[0]?.shape[0] ?? 0;
      batches.push(rows);
      await new Promise((r) => setTimeout(r, 1));
      const out: number[][] = [];
      for (let i = 0; i < rows; i++) {
        const a = x[i * 2] ?? 0;
        const b = x[i * 2 + 1] ?? 0;
        out.push([a + b, a - b, 10 * a]);
      }
      return [rowsTensor("output", out)];
    },
  };
}

test("50 concurrent callers are batched and each gets exactly its own rows", async () => {
  const model = recordingModel();
  const batcher = createDynamicBatcher({
    maxBatchSize: 16,
    maxDelayMs: 5,
    runBatch: model.runBatch,
  });
  const calls = Array.from({ length: 50 }, (_, i) => {
    const rows = Array.from({ length: (i % 3) + 1 }, (_, r) => [i, r + 0.5]);
    return { rows, promise: batcher.run([rowsTensor("input", rows)]) };
  });
  for (const { rows, promise } of calls) {
    const [output] = await promise;
    assert.deepEqual(output?.shape, [rows.length, 3]);
    assert.deepEqual(
      values(output),
      rows.flatMap(([a = 0, b = 0]) => [a + b, a - b, 10 * a]),
    );
  }
  const total = calls.reduce((n, c) => n + c.rows.length, 0);
  assert.equal(
    model.batches.reduce((n, r) => n + r, 0),
    total,
  );
  assert.ok(model.batches.every((r) => r <= 16));
  assert.ok(model.batches.length < 20, `expected few batches, got ${model.batches.length}`);
  assert.deepEqual(batcher.stats(), { batches: model.batches.length, rows: total });
  batcher.close();
});

test("a lone request waits at most maxDelayMs; a full batch runs at once", async () => {
  const model = recordingModel();
  const slow = createDynamicBatcher({ maxBatchSize: 4, maxDelayMs: 60, runBatch: model.runBatch });
  let started = Date.now();
  await slow.run([rowsTensor("input", [[1, 2]])]);
  const waited = Date.now() - started;
  assert.ok(waited >= 50 && waited < 1000, `waited ${waited} ms`);

  const full = createDynamicBatcher({
    maxBatchSize: 4,
    maxDelayMs: 10_000,
    runBatch: model.runBatch,
  });
  started = Date.now();
  await Promise.all([1, 2, 3, 4].map((i) => full.run([rowsTensor("input", [[i, i]])])));
  assert.ok(Date.now() - started < 1000);
  assert.equal(model.batches.at(-1), 4);

  const none = createDynamicBatcher({ maxBatchSize: 4, maxDelayMs: 0, runBatch: model.runBatch });
  started = Date.now();
  await none.run([rowsTensor("input", [[1, 1]])]);
  assert.ok(Date.now() - started < 50);
});

test("an error in a batch rejects every caller in it", async () => {
  const batcher = createDynamicBatcher({
    maxBatchSize: 8,
    maxDelayMs: 20,
    runBatch: () => Promise.reject(new Error("model crashed")),
  });
  const results = await Promise.allSettled(
    [1, 2, 3].map((i) => batcher.run([rowsTensor("input", [[i, i]])])),
  );
  assert.deepEqual(
    results.map((r) => (r.status === "rejected" ? (r.reason as Error).message : "ok")),
    ["model crashed", "model crashed", "model crashed"],
  );
});

test("an output without the batch's rows rejects the batch's callers with a TensorError", async () => {
  const batcher = createDynamicBatcher({
    maxBatchSize: 8,
    maxDelayMs: 20,
    runBatch: async () => [rowsTensor("output", [[1]])],
  });
  const results = await Promise.allSettled(
    [1, 2].map((i) => batcher.run([rowsTensor("input", [[i, i]])])),
  );
  for (const r of results) {
    assert.equal(r.status, "rejected");
    assert.ok(r.reason instanceof TensorError);
    assert.match(r.reason.message, /does not have the batch's 2 rows/);
  }
});

test("a request larger than maxBatchSize runs alone", async () => {
  const model = recordingModel();
  const batcher = createDynamicBatcher({
    maxBatchSize: 2,
    maxDelayMs: 20,
    runBatch: model.runBatch,
  });
  const big = Array.from({ length: 5 }, (_, i) => [i, 1]);
  const [a, b, c] = await Promise.all([
    batcher.run([rowsTensor("input", [[9, 9]])]),
    batcher.run([rowsTensor("input", big)]),
    batcher.run([rowsTensor("input", [[8, 8]])]),
  ]);
  assert.deepEqual(values(a?.[0]), [18, 0, 90]);
  assert.equal(b?.[0]?.shape[0], 5);
  assert.deepEqual(values(c?.[0]), [16, 0, 80]);
  assert.deepEqual([...model.batches].sort(), [2, 5]);
});

test("an aborted queued request is removed; close rejects what is still queued", async () => {
  const model = recordingModel();
  const batcher = createDynamicBatcher({
    maxBatchSize: 8,
    maxDelayMs: 30,
    runBatch: model.runBatch,
  });
  const controller = new AbortController();
  const aborted = batcher.run([rowsTensor("input", [[1, 1]])], controller.signal);
  const kept = batcher.run([rowsTensor("input", [[2, 2]])]);
  controller.abort(new Error("caller went away"));
  await assert.rejects(aborted, /caller went away/);
  assert.deepEqual(values((await kept)[0]), [4, 0, 20]);
  assert.deepEqual(model.batches, [1]);

  const closing = createDynamicBatcher({
    maxBatchSize: 8,
    maxDelayMs: 10_000,
    runBatch: model.runBatch,
  });
  const queued = closing.run([rowsTensor("input", [[1, 1]])]);
  closing.close();
  closing.close();
  await assert.rejects(queued, BatcherClosedError);
  await assert.rejects(closing.run([rowsTensor("input", [[1, 1]])]), BatcherClosedError);
});

test("inputs without a common batch dimension are refused", async () => {
  const batcher = createDynamicBatcher({
    maxBatchSize: 8,
    maxDelayMs: 0,
    runBatch: async (x) => [...x],
  });
  await assert.rejects(
    batcher.run([rowsTensor("a", [[1]]), rowsTensor("b", [[1], [2]])]),
    /tensor "b": 2 rows in dim 0, tensor "a" has 1/,
  );
  await assert.rejects(batcher.run([]), TensorError);
});
