import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { JobInputError } from "./errors.js";
import type { JobRunOutput } from "./job-run.js";
import { parseTransforms } from "./preprocessing.js";
import { runJob } from "./run-job.js";
import { parseCsv, parseNdjson } from "./table.js";
import { jobSpec } from "./test-fixtures.js";

let dir: string;
let csvPath: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-ml-prep-"));
  csvPath = join(dir, "data.csv");
  let csv = "id,height,weight,color,label\n";
  for (let i = 0; i < 20; i++) {
    csv += `${i},${150 + i},${50 + 2 * i},${["red", "green", "blue"][i % 3]},${i % 2}\n`;
  }
  await writeFile(csvPath, csv);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function preprocess(
  transforms: unknown,
  extra: Record<string, string> = {},
  path = csvPath,
): Promise<JobRunOutput> {
  return runJob(
    {
      spec: jobSpec(JobType.PREPROCESSING, {
        hyperparameters: { transforms: JSON.stringify(transforms), ...extra },
      }),
      datasetPath: path,
    },
    {
      workDir: join(dir, `out-${Math.random().toString(36).slice(2)}`),
      signal: new AbortController().signal,
    },
  );
}

function file(output: JobRunOutput, name: string): string {
  const found = output.artifacts.find((a) => a.name === name);
  assert.ok(found, name);
  return found.path;
}

test("z-score normalize, one-hot, seeded shuffle and split produce data, test and metrics", async () => {
  const out = await preprocess([
    { type: "one_hot", column: "color" },
    { type: "shuffle", seed: 5 },
    { type: "split", test_fraction: 0.25 },
    { type: "normalize", method: "zscore", columns: ["height", "weight"] },
  ]);
  assert.deepEqual(
    out.artifacts.map((a) => [a.name, a.mediaType]),
    [
      ["data", "text/csv"],
      ["test", "text/csv"],
      ["metrics", "application/json"],
    ],
  );
  assert.deepEqual(out.finalMetrics, { "train/samples": 15, "test/samples": 5 });
  const data = parseCsv(await readFile(file(out, "data"), "utf8"));
  const test = parseCsv(await readFile(file(out, "test"), "utf8"));
  assert.deepEqual(data.columns, [
    "id",
    "height",
    "weight",
    "color_blue",
    "color_green",
    "color_red",
    "label",
  ]);
  // Every row kept exactly once, shuffled.
  const ids = [...data.rows, ...test.rows].map((row) => Number(row[0]));
  assert.deepEqual(
    [...ids].sort((a, b) => a - b),
    Array.from({ length: 20 }, (_, i) => i),
  );
  assert.notDeepEqual(
    ids,
    Array.from({ length: 20 }, (_, i) => i),
  );
  // Training part normalised to mean 0 and standard deviation 1; test part scaled with its statistics.
  const heights = data.rows.map((row) => Number(row[1]));
  const mean = heights.reduce((a, b) => a + b, 0) / heights.length;
  const std = Math.sqrt(heights.reduce((a, b) => a + (b - mean) ** 2, 0) / heights.length);
  assert.ok(Math.abs(mean) < 1e-9 && Math.abs(std - 1) < 1e-9);
  const metrics = JSON.parse(await readFile(file(out, "metrics"), "utf8"));
  const fitted = metrics.transforms[3].columns.height as { mean: number; std: number };
  for (const row of test.rows) {
    const original = 150 + Number(row[0]);
    assert.ok(Math.abs(Number(row[1]) - (original - fitted.mean) / fitted.std) < 1e-9);
  }
  // One-hot columns are 0/1 and match the original colour.
  for (const row of [...data.rows, ...test.rows]) {
    const colour = ["red", "green", "blue"][Number(row[0]) % 3];
    assert.deepEqual(
      row.slice(3, 6).map(Number),
      ["blue", "green", "red"].map((c) => (c === colour ? 1 : 0)),
    );
  }
  // The same seed gives the same output.
  const again = await preprocess([
    { type: "one_hot", column: "color" },
    { type: "shuffle", seed: 5 },
    { type: "split", test_fraction: 0.25 },
    { type: "normalize", method: "zscore", columns: ["height", "weight"] },
  ]);
  assert.equal(
    await readFile(file(again, "data"), "utf8"),
    await readFile(file(out, "data"), "utf8"),
  );
});

test("min-max normalize of all numeric columns leaves the label alone; NDJSON in, NDJSON out", async () => {
  const path = join(dir, "data.ndjson");
  await writeFile(
    path,
    '{"a":2,"b":10,"label":1}\n{"a":4,"b":10,"label":0}\n{"a":6,"b":10,"label":1}\n',
  );
  const out = await preprocess([{ type: "normalize", method: "minmax" }], {}, path);
  assert.equal(out.artifacts[0]?.mediaType, "application/x-ndjson");
  const table = parseNdjson(await readFile(file(out, "data"), "utf8"));
  assert.deepEqual(table.rows, [
    [0, 0, 1],
    [0.5, 0, 0],
    [1, 0, 1],
  ]);
  const asCsv = await preprocess(
    [{ type: "normalize", method: "minmax" }],
    { output_format: "csv" },
    path,
  );
  assert.equal(await readFile(file(asCsv, "data"), "utf8"), "a,b,label\n0,0,1\n0.5,0,0\n1,0,1\n");
});

test("bad transforms are refused with the entry and field named", async () => {
  const refused = (text: string, pattern: RegExp) =>
    assert.throws(
      () => parseTransforms(text),
      (error: unknown) => error instanceof JobInputError && pattern.test(error.message),
      String(pattern),
    );
  refused("{", /hyperparameters.transforms is not valid JSON/);
  refused("{}", /must be a JSON list/);
  refused(
    '[{"type":"pca"}]',
    /transforms\[0\].type must be one of normalize, one_hot, shuffle, split/,
  );
  refused(
    '[{"type":"normalize","method":"robust"}]',
    /transforms\[0\].method must be zscore or minmax/,
  );
  refused(
    '[{"type":"split","test_fraction":1}]',
    /transforms\[0\].test_fraction must be a number between 0 and 1/,
  );
  refused(
    '[{"type":"split","test_fraction":0.1},{"type":"split","test_fraction":0.1}]',
    /transforms\[1\] is a second split/,
  );
  refused('[{"type":"one_hot"}]', /transforms\[0\].column must be a column name/);
  refused('[{"type":"shuffle","seed":"x"}]', /transforms\[0\].seed must be an integer/);
  refused('[{"type":"shuffle","sead":1}]', /transforms\[0\].sead is not a known setting/);
  await assert.rejects(
    preprocess([{ type: "one_hot", column: "size" }]),
    /transforms\[0\].column names column "size"/,
  );
  await assert.rejects(
    preprocess([{ type: "normalize", columns: ["color"] }]),
    /normalize: column "color", row 1: not a number/,
  );
  await assert.rejects(
    runJob(
      { spec: jobSpec(JobType.PREPROCESSING), datasetPath: csvPath },
      { workDir: join(dir, "none"), signal: new AbortController().signal },
    ),
    /hyperparameters.transforms is required/,
  );
});
