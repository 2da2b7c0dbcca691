import assert from "node:assert/strict";
import { test } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { JobPriority, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { JobServerError } from "../errors.js";
import { freeSpec } from "../test-support.js";
import { checkJobSpec } from "./spec-check.js";

const defaults = { maxAttempts: 3, jobTtlMs: 60_000, maxDurationMs: 5_000 };
const NOW = 1_700_000_000_000;

function refusal(mutate: Parameters<typeof freeSpec>[1]): JobServerError {
  try {
    checkJobSpec(freeSpec("job-1", mutate), defaults, NOW);
  } catch (error) {
    assert.ok(error instanceof JobServerError);
    return error;
  }
  return assert.fail("expected a refusal");
}

test("a valid spec gets the server's defaults", () => {
  const checked = checkJobSpec(freeSpec("job-1"), defaults, NOW);
  assert.equal(checked.maxAttempts, 3);
  assert.equal(checked.expiresAtMs, NOW + 60_000);
  assert.equal(checked.maxDurationMs, 5_000);
  assert.equal(checked.priority, JobPriority.NORMAL);
  assert.equal(checked.paymentAmount, 0n);
  assert.equal(checked.inputDigests.length, 2);
});

test("each bad field is named", () => {
  const cases: Array<[Parameters<typeof freeSpec>[1], RegExp]> = [
    [{ jobId: "has space" }, /^spec\.job_id: /],
    [{ jobType: JobType.UNSPECIFIED }, /^spec\.job_type: /],
    [{ model: undefined }, /^spec\.model: is required for INFERENCE/],
    [{ dataset: { digest: "sha256:abc" } }, /^spec\.dataset\.digest: /],
    [{ dataset: { digest: `sha256:${"a".repeat(64)}`, uri: "ftp://x" } }, /^spec\.dataset\.uri: /],
    [{ hyperparameters: { "Learning-Rate": "1" } }, /^spec\.hyperparameters\["Learning-Rate"\]: /],
    [{ maxAttempts: 11 }, /^spec\.max_attempts: /],
    [{ minReputation: 2 }, /^spec\.min_reputation: /],
    [{ expiresAt: timestampFromMs(NOW - 1) }, /^spec\.expires_at: /],
    [{ paymentAmount: "1.5" }, /^spec\.payment_amount: /],
    [{ paymentAmount: "10" }, /^spec\.payer_address: /],
    [{ requiredRuntime: "Bad Runtime" }, /^spec\.required_runtime: /],
  ];
  for (const [mutate, message] of cases) {
    const error = refusal(mutate);
    assert.equal(error.kind, "invalid_argument", error.message);
    assert.match(error.message, message);
  }
});

test("federated training is refused as not offered, not as bad input", () => {
  const error = refusal({
    jobType: JobType.TRAINING,
    federation: { rounds: 2, nodesPerRound: 2 },
  });
  assert.equal(error.kind, "unimplemented");
  assert.match(error.message, /^spec\.federation: /);
});
