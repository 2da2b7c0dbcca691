import assert from "node:assert/strict";
import { test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  JobPriority,
  type JobSpec,
  JobSpecSchema,
  JobType,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import { SchedulerInputError } from "./errors.js";
import {
  costFor,
  jobRequirementsFrom,
  maxPricePerHourFor,
  memoryFor,
  runtimeFor,
  schedulerJobFrom,
} from "./job-requirements.js";

function spec(fields: Omit<MessageInitShape<typeof JobSpecSchema>, "$typeName"> = {}): JobSpec {
  return create(JobSpecSchema, { jobId: "job-1", paymentAmount: "1000", ...fields });
}

const ONNX = { content: { mediaType: "application/onnx" } };
const SEQUENTIAL = { content: { mediaType: "application/vnd.tessera.sequential+json" } };

test("runtime: required_runtime wins; otherwise derived from job type and model format", () => {
  assert.equal(
    runtimeFor(spec({ requiredRuntime: "custom", jobType: JobType.TRAINING })),
    "custom",
  );
  assert.equal(runtimeFor(spec({ jobType: JobType.PREPROCESSING, model: ONNX })), "tessera-data");
  assert.equal(runtimeFor(spec({ jobType: JobType.INFERENCE, model: ONNX })), "onnxruntime");
  assert.equal(
    runtimeFor(spec({ jobType: JobType.EVALUATION, model: { source: "onnx" } })),
    "onnxruntime",
  );
  assert.equal(
    runtimeFor(spec({ jobType: JobType.INFERENCE, model: { path: "/models/Net.ONNX" } })),
    "onnxruntime",
  );
  assert.equal(runtimeFor(spec({ jobType: JobType.TRAINING, model: SEQUENTIAL })), "tfjs");
  assert.equal(runtimeFor(spec({ jobType: JobType.TRAINING })), "tfjs");
  assert.equal(runtimeFor(spec({ jobType: JobType.INFERENCE })), "onnxruntime");
  assert.equal(runtimeFor(spec({ jobType: JobType.UNSPECIFIED })), "");
});

test("memory: the estimate, capped by a lower hard limit; the limit without an estimate", () => {
  assert.equal(memoryFor(spec({ estimatedMemoryBytes: 4n })), 4n);
  assert.equal(memoryFor(spec({ estimatedMemoryBytes: 4n, maxMemoryBytes: 8n })), 4n);
  assert.equal(memoryFor(spec({ estimatedMemoryBytes: 8n, maxMemoryBytes: 4n })), 4n);
  assert.equal(memoryFor(spec({ maxMemoryBytes: 6n })), 6n);
  assert.equal(memoryFor(spec()), 0n);
});

test("price rule: ceil(price x duration / 1 h) <= payment, for every price around the cap", () => {
  for (const [payment, durationMs] of [
    [1000n, 1_800_000],
    [7n, 1_234_567],
    [1_500_000n, 7_200_000],
    [0n, 60_000],
  ] as const) {
    const cap = maxPricePerHourFor(payment, durationMs);
    assert.ok(costFor(cap, durationMs) <= payment, `cap ${cap} affordable`);
    assert.ok(costFor(cap + 1n, durationMs) > payment, `cap + 1 not affordable`);
  }
});

test("requirements: duration falls back from the estimate to the limit to the default", () => {
  const estimated = jobRequirementsFrom(
    spec({ estimatedDurationMs: 1_800_000n, maxDurationMs: 7_200_000n }),
  );
  assert.equal(estimated.durationMs, 1_800_000);
  assert.equal(estimated.maxPricePerHour, 2000n);
  assert.equal(jobRequirementsFrom(spec({ maxDurationMs: 7_200_000n })).maxPricePerHour, 500n);
  assert.equal(jobRequirementsFrom(spec()).durationMs, 3_600_000);
  assert.equal(jobRequirementsFrom(spec(), { defaultDurationMs: 60_000 }).maxPricePerHour, 60_000n);
});

test("requirements carry device, reputation, direct access; empty payment pays nothing", () => {
  const requirements = jobRequirementsFrom(
    spec({
      requiredDevice: DeviceType.CUDA,
      minReputation: 0.75,
      requestDirectAccess: true,
      paymentAmount: "",
      jobType: JobType.INFERENCE,
      model: ONNX,
      estimatedMemoryBytes: 123n,
    }),
  );
  assert.equal(requirements.device, DeviceType.CUDA);
  assert.equal(requirements.minReputation, 0.75);
  assert.equal(requirements.directAccess, true);
  assert.equal(requirements.maxPricePerHour, 0n);
  assert.equal(requirements.runtime, "onnxruntime");
  assert.equal(requirements.memoryBytes, 123n);
});

test("bad payment or reputation is rejected naming the field", () => {
  assert.throws(
    () => jobRequirementsFrom(spec({ paymentAmount: "1.5" })),
    (error: unknown) => error instanceof SchedulerInputError && error.field === "payment_amount",
  );
  assert.throws(
    () => jobRequirementsFrom(spec({ minReputation: 2 })),
    (error: unknown) => error instanceof SchedulerInputError && error.field === "min_reputation",
  );
});

test("schedulerJobFrom: UNSPECIFIED priority becomes NORMAL and the queue time is kept", () => {
  const job = schedulerJobFrom(spec(), new Date(5000));
  assert.equal(job.priority, JobPriority.NORMAL);
  assert.equal(job.queuedAtMs, 5000);
  assert.equal(job.jobId, "job-1");
  assert.equal(
    schedulerJobFrom(spec({ priority: JobPriority.CRITICAL }), new Date(0)).priority,
    JobPriority.CRITICAL,
  );
});
