import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { generateKeyPair } from "@tessera/identity/keys";
import { ContentRefSchema, DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  AggregationStrategy,
  JobPriority,
  JobSpecSchema,
  JobType,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  DEFAULT_ESCROW_EXPIRES_IN_MS,
  JobSpecError,
  parseJobSpecYaml,
  setContentRef,
} from "./job-spec-yaml.js";
import { SEQUENTIAL_MODEL } from "./media-types.js";

const DIGEST = `sha256:${"ab".repeat(32)}`;

describe("parseJobSpecYaml", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-spec-"));
    await mkdir(join(dir, "data"));
    await mkdir(join(dir, "models"));
    await writeFile(join(dir, "data", "blobs.csv"), "x0,x1,label\n1,2,0\n");
    await writeFile(join(dir, "models", "classifier.json"), '{"format":"tessera.sequential/v1"}');
    await writeFile(join(dir, "weights.bin"), new Uint8Array(16));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Parses `text` and returns the one-line message of the JobSpecError it must throw. */
  const problemsOf = (text: string): string[] => {
    try {
      parseJobSpecYaml(text, dir);
    } catch (error) {
      assert.ok(error instanceof JobSpecError, String(error));
      return error.problems.map((p) => `${p.path}: ${p.message}`);
    }
    assert.fail("the spec was accepted");
  };

  it("maps a complete training spec onto a JobSpec, files listed for upload", () => {
    const parsed = parseJobSpecYaml(
      `
job_id: train-1
type: training
priority: high
model:
  file: ./models/classifier.json
  id: blobs-classifier
  name: Blobs classifier
  version: 2
  inputs:
    - {name: features, shape: [-1, 2], dtype: float32}
dataset:
  file: data/blobs.csv
initial_weights:
  file: weights.bin
  media_type: application/x-tessera-weights
hyperparameters:
  label_column: label
  learning_rate: 0.01
  seed: 7
  shuffle: true
  transforms: [{op: standardize, columns: [x0, x1]}]
epochs: 20
batch_size: 32
requirements:
  device: cpu
  runtime: tfjs
  memory: 256MiB
  max_memory: 1GB
  duration: 2m
  max_duration: 10m
  max_attempts: 2
  min_reputation: 0.25
direct_access: false
expires_at: 2031-02-03T04:05:06Z
`,
      dir,
    );
    const { spec } = parsed;
    assert.equal(parsed.jobIdGenerated, false);
    assert.equal(spec.jobId, "train-1");
    assert.equal(spec.jobType, JobType.TRAINING);
    assert.equal(spec.priority, JobPriority.HIGH);
    assert.equal(spec.protocolVersion?.major, 1);
    assert.equal(spec.model?.modelId, "blobs-classifier");
    assert.equal(spec.model?.name, "Blobs classifier");
    assert.equal(spec.model?.version, "2");
    assert.equal(spec.model?.source, "artifact");
    assert.equal(spec.model?.path, "classifier.json");
    assert.deepEqual(
      spec.model?.inputs.map((t) => [t.name, t.shape, t.dtype]),
      [["features", [-1n, 2n], "float32"]],
    );
    assert.equal(spec.model?.content, undefined, "filled at submit");
    assert.deepEqual(spec.hyperparameters, {
      label_column: "label",
      learning_rate: "0.01",
      seed: "7",
      shuffle: "true",
      transforms: '[{"op":"standardize","columns":["x0","x1"]}]',
    });
    assert.equal(spec.epochs, 20);
    assert.equal(spec.batchSize, 32);
    assert.equal(spec.requiredDevice, DeviceType.CPU);
    assert.equal(spec.requiredRuntime, "tfjs");
    assert.equal(spec.estimatedMemoryBytes, 256n * 1024n * 1024n);
    assert.equal(spec.maxMemoryBytes, 1_000_000_000n);
    assert.equal(spec.estimatedDurationMs, 120_000n);
    assert.equal(spec.maxDurationMs, 600_000n);
    assert.equal(spec.maxAttempts, 2);
    assert.equal(spec.minReputation, 0.25);
    assert.equal(spec.paymentAmount, "");
    assert.equal(parsed.payment, undefined);
    assert.equal(
      spec.expiresAt && timestampDate(spec.expiresAt).toISOString(),
      "2031-02-03T04:05:06.000Z",
    );
    assert.deepEqual(
      parsed.localFiles.map((f) => [f.field, f.slot, f.path, f.name, f.mediaType, f.sizeBytes]),
      [
        [
          "model.file",
          "model",
          join(dir, "models", "classifier.json"),
          "classifier.json",
          SEQUENTIAL_MODEL,
          34,
        ],
        ["dataset.file", "dataset", join(dir, "data", "blobs.csv"), "blobs.csv", "text/csv", 18],
        [
          "initial_weights.file",
          "initial_weights",
          join(dir, "weights.bin"),
          "weights.bin",
          "application/x-tessera-weights",
          16,
        ],
      ],
    );
    assert.deepEqual(parsed.jobOutputs, []);
  });

  it("makes up a UUID job id when there is none, and leaves everything optional unset", () => {
    const parsed = parseJobSpecYaml("type: preprocessing\ndataset: {file: data/blobs.csv}\n", dir);
    assert.equal(parsed.jobIdGenerated, true);
    assert.match(
      parsed.spec.jobId,
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    assert.equal(parsed.spec.model, undefined);
    assert.equal(parsed.spec.priority, JobPriority.UNSPECIFIED);
    assert.equal(parsed.spec.epochs, 0);
    const again = parseJobSpecYaml("type: preprocessing\ndataset: {file: data/blobs.csv}\n", dir);
    assert.notEqual(again.spec.jobId, parsed.spec.jobId);
  });

  it("takes refs as they are and records from_job outputs with their default artifact", () => {
    const parsed = parseJobSpecYaml(
      `
type: inference
model: {from_job: train-1, id: blobs}
dataset:
  ref: {digest: "${DIGEST}", size_bytes: 120, uri: "artifact://a-1", media_type: text/csv}
initial_weights: {from_job: "train-1", artifact: weights}
`,
      dir,
    );
    assert.equal(parsed.spec.dataset?.digest, DIGEST);
    assert.equal(parsed.spec.dataset?.sizeBytes, 120n);
    assert.equal(parsed.spec.dataset?.uri, "artifact://a-1");
    assert.equal(parsed.spec.dataset?.mediaType, "text/csv");
    assert.equal(parsed.spec.model?.path, "train-1/model");
    assert.deepEqual(parsed.jobOutputs, [
      { field: "model.from_job", slot: "model", jobId: "train-1", artifact: "model" },
      {
        field: "initial_weights.from_job",
        slot: "initial_weights",
        jobId: "train-1",
        artifact: "weights",
      },
    ]);
    assert.deepEqual(parsed.localFiles, []);
  });

  it("keeps payment amounts beyond 2^64 exact and defaults the escrow's lifetime", () => {
    const parsed = parseJobSpecYaml(
      `
type: evaluation
model: {file: models/classifier.json, id: blobs}
dataset: {file: data/blobs.csv}
requirements: {duration: 30s}
payment: {amount: 18446744073709551617}
`,
      dir,
    );
    assert.equal(parsed.spec.paymentAmount, "18446744073709551617");
    assert.deepEqual(parsed.payment, {
      amount: 18446744073709551617n,
      escrowExpiresInMs: DEFAULT_ESCROW_EXPIRES_IN_MS,
      escrowId: undefined,
    });
    const quoted = parseJobSpecYaml(
      `
type: evaluation
model: {file: models/classifier.json, id: blobs}
dataset: {file: data/blobs.csv}
requirements: {duration: 30s}
payment: {amount: "000250", expires_in: 2h, escrow_id: my-escrow.1}
`,
      dir,
    );
    assert.equal(quoted.spec.paymentAmount, "250");
    assert.deepEqual(quoted.payment, {
      amount: 250n,
      escrowExpiresInMs: 7_200_000,
      escrowId: "my-escrow.1",
    });
    const free = parseJobSpecYaml(
      "type: preprocessing\ndataset: {file: data/blobs.csv}\npayment: {amount: 0}\n",
      dir,
    );
    assert.equal(free.payment, undefined);
    assert.equal(free.spec.paymentAmount, "");
  });

  it("reads federation with participants and their own datasets", () => {
    const node = generateKeyPair().address;
    const parsed = parseJobSpecYaml(
      `
type: training
model: {file: models/classifier.json}
federation:
  rounds: 3
  aggregation: fedavg
  participants:
    - node_address: ${node}
      dataset: {file: data/blobs.csv}
`,
      dir,
    );
    const federation = parsed.spec.federation;
    assert.equal(federation?.rounds, 3);
    assert.equal(federation?.nodesPerRound, 1);
    assert.equal(federation?.aggregation, AggregationStrategy.FEDAVG);
    assert.equal(federation?.participants[0]?.nodeAddress, node);
    assert.equal(parsed.localFiles[1]?.slot, "federation.participants.0.dataset");
    const spec = parsed.spec;
    setContentRef(
      spec,
      "federation.participants.0.dataset",
      create(ContentRefSchema, { digest: DIGEST }),
    );
    assert.equal(spec.federation?.participants[0]?.dataset?.digest, DIGEST);
  });

  it("names every bad field, by its YAML path, in one error", () => {
    const problems = problemsOf(`
job_id: "has space"
type: trainin
priority: urgent
modle: {}
model: {file: ./nope.json, ref: {digest: x}}
dataset: {file: ./data}
hyperparameters: {LearningRate: 1, seed: null}
epochs: -1
batch_size: 2.5
requirements:
  device: tpu
  memory: lots
  max_duration: 10 years
  max_attempts: 11
  min_reputation: 2
  gpu: 1
direct_access: "yes"
expires_at: tomorrow
`);
    assert.deepEqual(problems, [
      "modle: unknown field; expected one of job_id, type, priority, model, dataset, initial_weights, hyperparameters, epochs, batch_size, requirements, payment, direct_access, federation, expires_at",
      'job_id: must be 1 to 128 of A-Z, a-z, 0-9, ".", "_", ":" and "-", got "has space"',
      'type: unknown value "trainin"; use training, inference, evaluation, preprocessing',
      'priority: unknown value "urgent"; use low, normal, high, critical',
      "model: give only one of file, ref or from_job, not file and ref",
      "dataset.file: ./data is not a regular file",
      "hyperparameters.LearningRate: names are lower_snake_case (a-z, 0-9 and _, starting with a letter)",
      "hyperparameters.seed: has no value",
      "epochs: must be from 0 to 4294967295, got -1",
      "batch_size: must be a whole number, got 2.5",
      "requirements.gpu: unknown field; expected one of device, runtime, memory, max_memory, duration, max_duration, max_attempts, min_reputation",
      'requirements.device: unknown value "tpu"; use cpu, cuda, opencl, metal, rocm',
      'requirements.memory: must be a size such as 512MiB, 2GB or a number of bytes, got "lots"',
      'requirements.max_duration: must be a duration such as 90s, 10m, 1h or 2d, got "10 years"',
      "requirements.max_attempts: must be from 0 to 10, got 11",
      "requirements.min_reputation: must be from 0 to 1, got 2",
      'direct_access: must be true or false, got "yes"',
      "expires_at: must be a date and time such as 2030-01-31T12:00:00Z",
    ]);
  });

  it("says which file is missing and where it looked", () => {
    assert.deepEqual(
      problemsOf(
        "type: training\nmodel: {file: models/classifier.json}\ndataset: {file: ./data.csv}\n",
      ),
      [`dataset.file: no such file ./data.csv (looked at ${join(dir, "data.csv")})`],
    );
  });

  it("names missing required parts: type, model, dataset", () => {
    assert.deepEqual(problemsOf("job_id: x\n"), [
      "type: is required: training, inference, evaluation, preprocessing",
      "dataset: is required: give file, ref or from_job",
    ]);
    assert.deepEqual(problemsOf("type: inference\ndataset: {file: data/blobs.csv}\n"), [
      "model: is required for this job type: give file, ref or from_job",
    ]);
    assert.deepEqual(problemsOf("type: training\nmodel: {id: m}\ndataset: {}\n"), [
      "model: give one of file, ref or from_job",
      "dataset: give one of file, ref or from_job",
    ]);
  });

  it("checks refs: digest, size, uri, and keys that go with another form", () => {
    assert.deepEqual(
      problemsOf(`
type: preprocessing
dataset:
  ref: {digest: "sha256:ABC", size_bytes: "12", uri: "s3://bucket/x", extra: 1}
  media_type: text/csv
`),
      [
        "dataset.media_type: goes with file; a ref carries its own media_type",
        "dataset.ref.extra: unknown field; expected one of digest, size_bytes, uri, media_type",
        'dataset.ref.digest: must be "sha256:" and 64 lowercase hex digits',
        'dataset.ref.size_bytes: must be a whole number, got "12"',
        "dataset.ref.uri: must be artifact://<id>, file:///<absolute path> or an http(s) URL",
      ],
    );
    assert.deepEqual(
      problemsOf("type: preprocessing\ndataset: {file: data/blobs.csv, artifact: data}\n"),
      ["dataset.artifact: goes with from_job"],
    );
    assert.deepEqual(
      problemsOf(
        "type: inference\nmodel: {from_job: 'not a job'}\ndataset: {file: data/blobs.csv}\n",
      ),
      ['model.from_job: is not a job id: "not a job"'],
    );
  });

  it("checks payments: digits only, a positive lifetime, and what a paid job needs", () => {
    const base =
      "type: training\nmodel: {file: models/classifier.json}\ndataset: {file: data/blobs.csv}\n";
    assert.deepEqual(problemsOf(`${base}payment: {amount: 1.5, expires_in: 0}\n`), [
      "payment.amount: must be a whole number of base units (digits only), got 1.5",
      "payment.expires_in: must be longer than zero",
    ]);
    assert.deepEqual(problemsOf(`${base}payment: {amount: -3}\n`), [
      'payment.amount: must be a whole number of base units (digits only), got "-3"',
    ]);
    assert.deepEqual(problemsOf(`${base}payment: {}\n`), [
      "payment.amount: is required: a whole number of base units (0 for a free job)",
    ]);
    assert.deepEqual(problemsOf(`${base}payment: {amount: 100}\n`), [
      "requirements.duration: is required for a paid job: validators price it by the estimated duration",
      "model.id: is required for a paid job: validators route paid work by model",
    ]);
  });

  it("checks federation", () => {
    assert.deepEqual(
      problemsOf(`
type: training
model: {file: models/classifier.json}
dataset: {file: data/blobs.csv}
federation:
  rounds: 0
  nodes_per_round: 3
  aggregation: median
  participants: [{node_address: tsr1nope}]
`),
      [
        "federation.rounds: must be from 1 to 4294967295, got 0",
        'federation.aggregation: unknown value "median"; use fedavg',
        'federation.participants[0].node_address: is not a valid address (tsr1…): "tsr1nope"',
        "federation.nodes_per_round: is 3 but only 1 participants are listed",
      ],
    );
    assert.deepEqual(
      problemsOf(
        "type: inference\nmodel: {file: models/classifier.json}\ndataset: {file: data/blobs.csv}\nfederation: {rounds: 1}\n",
      ),
      ["federation: is for training jobs only"],
    );
  });

  it("reports YAML syntax errors and documents that are not a mapping", () => {
    const syntax = problemsOf("type: training\n  model: [\n");
    assert.equal(syntax.length > 0, true);
    assert.match(syntax[0] ?? "", /^: .*line \d+/);
    assert.deepEqual(problemsOf(""), [
      ": the spec is empty; it needs at least type, model (except preprocessing) and dataset",
    ]);
    assert.match(
      problemsOf("- a\n- b\n")[0] ?? "",
      /^: must be a mapping \(job_id, type, .*\), got a list$/,
    );
    assert.match(problemsOf("type: a\ntype: b\n")[0] ?? "", /Map keys must be unique/);
  });

  it("puts the source name in front of the message", () => {
    assert.throws(
      () => parseJobSpecYaml("type: training\n", dir, { source: "train.yaml" }),
      (error: unknown) =>
        error instanceof JobSpecError &&
        error.message.startsWith("train.yaml: model: is required for this job type"),
    );
  });

  it("returns a spec that protobuf can serialize", () => {
    const parsed = parseJobSpecYaml("type: preprocessing\ndataset: {file: data/blobs.csv}\n", dir, {
      generateJobId: () => "fixed-id",
    });
    assert.equal(parsed.spec.jobId, "fixed-id");
    assert.equal(parsed.spec.$typeName, JobSpecSchema.typeName);
  });
});
