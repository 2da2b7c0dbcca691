// The files in examples/ are what the README says: every spec parses with its files present, and
// the committed data is exactly what its generator writes.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { parseJobSpecYaml } from "@tessera/sdk/job-spec-yaml";

const examples = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "examples");

describe("examples/", () => {
  it("every spec parses, with the job type, inputs and payment the README describes", () => {
    const specs = readdirSync(examples).filter((name) => name.endsWith(".yaml"));
    assert.deepEqual(specs.sort(), [
      "evaluate.yaml",
      "infer.yaml",
      "preprocess.yaml",
      "train-classifier-paid.yaml",
      "train-classifier.yaml",
    ]);
    const parsed = Object.fromEntries(
      specs.map((name) => [
        name,
        parseJobSpecYaml(readFileSync(join(examples, name), "utf8"), examples, { source: name }),
      ]),
    );
    const train = parsed["train-classifier.yaml"];
    assert.equal(train?.spec.jobType, JobType.TRAINING);
    assert.deepEqual(
      train?.localFiles.map((f) => [f.field, f.mediaType]),
      [
        ["model.file", "application/vnd.tessera.sequential+json"],
        ["dataset.file", "text/csv"],
      ],
    );
    assert.equal(train?.payment, undefined);
    assert.equal(parsed["train-classifier-paid.yaml"]?.payment?.amount, 1500n);
    for (const name of ["infer.yaml", "evaluate.yaml"]) {
      assert.deepEqual(parsed[name]?.jobOutputs, [
        { field: "model.from_job", slot: "model", jobId: train?.spec.jobId, artifact: "model" },
      ]);
    }
    assert.deepEqual(JSON.parse(parsed["preprocess.yaml"]?.spec.hyperparameters.transforms ?? ""), [
      { type: "shuffle", seed: 7 },
      { type: "normalize", method: "zscore" },
      { type: "split", test_fraction: 0.2 },
    ]);
  });

  it("the committed blobs are what generate-blobs.mjs writes", () => {
    const check = spawnSync(process.execPath, [join(examples, "generate-blobs.mjs"), "--check"], {
      encoding: "utf8",
    });
    assert.equal(check.status, 0, check.stderr);
    const rows = readFileSync(join(examples, "data", "blobs.csv"), "utf8")
      .trimEnd()
      .split("\n");
    assert.equal(rows[0], "x0,x1,label");
    assert.equal(rows.length, 301);
  });
});
