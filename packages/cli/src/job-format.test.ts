import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ContentRefSchema,
  ModelDescriptorSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { ArtifactSchema } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import {
  JobFailureReason,
  JobResultSchema,
  JobSchema,
  JobSpecSchema,
  JobState,
  JobStatusSchema,
  JobType,
  ResultArtifactSchema,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  CancelJobResponseSchema,
  ListJobsResponseSchema,
} from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { EscrowSchema, EscrowState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import {
  formatArtifact,
  formatBytes,
  formatCancelled,
  formatJobList,
  formatJobStatus,
  formatMetricValue,
  formatState,
  formatSubmitted,
} from "./job-format.js";

const DIGEST = `sha256:${"7".repeat(64)}`;
const at = (iso: string) => timestampFromDate(new Date(iso));
const ref = (id: string, size: bigint, mediaType: string) =>
  create(ContentRefSchema, { digest: DIGEST, sizeBytes: size, uri: `artifact://${id}`, mediaType });

describe("job formatting", () => {
  it("prints metric values and sizes for people", () => {
    assert.equal(formatMetricValue(0.963333333), "0.963333");
    assert.equal(formatMetricValue(240), "240");
    assert.equal(formatMetricValue(0.000123456789), "0.000123457");
    assert.equal(formatBytes(918), "918 B");
    assert.equal(formatBytes(1536n), "1.5 KiB");
    assert.equal(formatBytes(12 * 1024 * 1024), "12.0 MiB");
  });

  it("names a failed job's reason and message", () => {
    const failed = create(JobStatusSchema, {
      state: JobState.FAILED,
      failureReason: JobFailureReason.NODE_ERROR,
      errorMessage: "out of memory",
    });
    assert.equal(formatState(failed), "failed (node-error: out of memory)");
    assert.equal(formatState(create(JobStatusSchema, { state: JobState.QUEUED })), "queued");
  });

  it("prints a completed job: fields, sorted final metrics, then its artifacts as a table", () => {
    const status = create(JobStatusSchema, {
      jobId: "train-1",
      state: JobState.COMPLETED,
      progress: 1,
      currentEpoch: 20,
      attempt: 1,
      queuedAt: at("2030-01-01T00:00:00Z"),
      startedAt: at("2030-01-01T00:00:01Z"),
      endedAt: at("2030-01-01T00:00:03.5Z"),
      metrics: { "train/loss": 0.5 },
    });
    const result = create(JobResultSchema, {
      nodeAddress: "tsr1node",
      totalComputeTimeMs: 1250n,
      finalMetrics: { "train/loss": 0.0229443, "test/accuracy": 1, "train/samples": 240 },
      artifacts: [
        create(ResultArtifactSchema, {
          name: "model",
          content: ref("m1", 2048n, "application/onnx"),
        }),
        create(ResultArtifactSchema, {
          name: "metrics",
          content: ref("m22", 900n, "application/json"),
        }),
      ],
    });
    assert.equal(
      formatJobStatus(status, result),
      [
        "job id: train-1",
        "state: completed",
        "progress: 100%",
        "epoch: 20",
        "attempt: 1",
        "node: tsr1node",
        "queued at: 2030-01-01T00:00:00.000Z",
        "started at: 2030-01-01T00:00:01.000Z",
        "ended at: 2030-01-01T00:00:03.500Z",
        "compute time: 1250 ms",
        "metrics:",
        "  test/accuracy          1",
        "  train/loss     0.0229443",
        "  train/samples        240",
        "artifacts:",
        "  NAME        SIZE  URI             DIGEST",
        `  model    2.0 KiB  artifact://m1   ${DIGEST}`,
        `  metrics    900 B  artifact://m22  ${DIGEST}`,
        "",
      ].join("\n"),
    );
  });

  it("prints a running job's live metrics when there is no result yet", () => {
    const text = formatJobStatus(
      create(JobStatusSchema, {
        jobId: "j",
        state: JobState.RUNNING,
        progress: 0.42,
        currentNodeAddress: "tsr1node",
        metrics: { "train/loss": 0.5 },
      }),
    );
    assert.match(text, /^state: running\nprogress: 42%\n/m);
    assert.match(text, /^node: tsr1node$/m);
    const retried = formatJobStatus(
      create(JobStatusSchema, {
        jobId: "j",
        state: JobState.QUEUED,
        errorMessage: "lease\nlapsed",
      }),
    );
    assert.match(retried, /^state: queued\nprogress: 0%\nlast problem: lease lapsed\n/m);
    assert.match(text, /^metrics:\n {2}train\/loss {2}0\.5\n$/m);
    assert.doesNotMatch(text, /artifacts:/);
  });

  it("prints what was submitted: id, whether new, payment and escrow, the inputs' refs", () => {
    const job = create(JobSchema, {
      spec: create(JobSpecSchema, {
        jobId: "paid-1",
        jobType: JobType.TRAINING,
        paymentAmount: "1500",
        model: create(ModelDescriptorSchema, { content: ref("model-a", 300n, "x") }),
        dataset: ref("data-a", 5000n, "text/csv"),
      }),
      status: create(JobStatusSchema, { state: JobState.PENDING }),
    });
    const escrow = create(EscrowSchema, { escrowId: "job-escrow.1", state: EscrowState.HELD });
    assert.equal(
      formatSubmitted({ job, created: false, escrow, uploads: [], nodeAssignment: undefined }),
      [
        "job id: paid-1",
        "created: no (this job id was submitted before)",
        "type: training",
        "state: pending",
        "payment: 1500",
        "escrow: job-escrow.1 (held)",
        `model: artifact://model-a (${DIGEST}, 300 B)`,
        `dataset: artifact://data-a (${DIGEST}, 4.9 KiB)`,
        "",
      ].join("\n"),
    );
  });

  it("lists jobs as a table with the next page token; an empty page says so", () => {
    const page = create(ListJobsResponseSchema, {
      jobs: [
        create(JobSchema, {
          spec: create(JobSpecSchema, { jobId: "b", jobType: JobType.INFERENCE }),
          status: create(JobStatusSchema, { state: JobState.RUNNING, progress: 0.5 }),
          createdAt: at("2030-01-02T00:00:00Z"),
        }),
        create(JobSchema, {
          spec: create(JobSpecSchema, {
            jobId: "a",
            jobType: JobType.TRAINING,
            paymentAmount: "25",
          }),
          status: create(JobStatusSchema, { state: JobState.COMPLETED, progress: 1 }),
          createdAt: at("2030-01-01T00:00:00Z"),
        }),
      ],
      nextPageToken: "tok",
    });
    assert.equal(
      formatJobList(page),
      [
        "JOB ID  TYPE       STATE      PROGRESS  PAYMENT  CREATED",
        "b       inference  running         50%     free  2030-01-02T00:00:00.000Z",
        "a       training   completed      100%       25  2030-01-01T00:00:00.000Z",
        "next page token: tok",
        "",
      ].join("\n"),
    );
    assert.equal(formatJobList(create(ListJobsResponseSchema)), "no jobs\n");
  });

  it("prints a cancellation and an artifact with a ref line to paste into a spec", () => {
    assert.equal(
      formatCancelled(
        "j",
        create(CancelJobResponseSchema, {
          status: create(JobStatusSchema, { jobId: "j", state: JobState.CANCELLED }),
          refundIssued: true,
          refundTransactionId: "tx-9",
        }),
      ),
      "job id: j\nstate: cancelled\nrefund: issued\nrefund transaction: tx-9\n",
    );
    const text = formatArtifact(
      create(ArtifactSchema, {
        artifactId: "a1",
        name: "blobs.csv",
        content: ref("a1", 1536n, "text/csv"),
        ownerAddress: "tsr1me",
        createdAt: at("2030-01-01T00:00:00Z"),
      }),
      "/tmp/blobs.csv",
    );
    assert.match(text, /^saved to: \/tmp\/blobs\.csv\nartifact id: a1\nname: blobs\.csv\n/);
    assert.match(text, /^size: 1536 bytes \(1\.5 KiB\)$/m);
    assert.match(text, /^job id: -$/m);
    assert.match(
      text,
      new RegExp(
        `^ref: \\{digest: "${DIGEST}", size_bytes: 1536, uri: "artifact://a1", media_type: "text/csv"\\}$`,
        "m",
      ),
    );
  });
});
