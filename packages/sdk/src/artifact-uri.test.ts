import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JobFailureReason, JobState, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { artifactUri, parseArtifactReference } from "./artifact-uri.js";
import { escrowIdFor } from "./escrow.js";
import { failureReasonName, isTerminalState, jobStateName, jobTypeName } from "./job-names.js";

describe("artifact references", () => {
  it("takes a bare id or an artifact:// URI, and nothing else", () => {
    assert.equal(parseArtifactReference("a1b2"), "a1b2");
    assert.equal(parseArtifactReference("artifact://a1b2"), "a1b2");
    assert.equal(parseArtifactReference(artifactUri("x.y:z")), "x.y:z");
    for (const bad of [
      "",
      "artifact://",
      "file:///etc/passwd",
      "https://x/y",
      "a b",
      "../x",
      "é",
    ]) {
      assert.equal(parseArtifactReference(bad), undefined, bad);
    }
  });
});

describe("names", () => {
  it("prints enum values the way the CLI reads them", () => {
    assert.equal(jobTypeName(JobType.PREPROCESSING), "preprocessing");
    assert.equal(jobStateName(JobState.CANCELLED), "cancelled");
    assert.equal(jobStateName(99 as JobState), "unknown(99)");
    assert.equal(failureReasonName(JobFailureReason.TIME_LIMIT_EXCEEDED), "time-limit-exceeded");
    assert.deepEqual(
      [JobState.VALIDATING, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED].map(
        isTerminalState,
      ),
      [false, true, true, true],
    );
  });

  it("derives one escrow id per payer and job", () => {
    assert.equal(escrowIdFor("tsr1a", "job"), escrowIdFor("tsr1a", "job"));
    assert.notEqual(escrowIdFor("tsr1a", "job"), escrowIdFor("tsr1b", "job"));
    assert.notEqual(escrowIdFor("tsr1a", "job"), escrowIdFor("tsr1a", "job2"));
  });
});
