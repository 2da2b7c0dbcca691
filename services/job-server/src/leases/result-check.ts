/**
 * The checks a COMPLETED result passes before a job leaves its lease: the node's signed
 * ComputeCompletion is for this job, by this node, verifies against the node's key, and its
 * result_hash is the hash of the artifacts' manifest; each artifact is committed on this job
 * server for this job, by this node, with the stated digest.
 */
import { bytesEqual } from "@tessera/identity/hash";
import { ResultManifestError, resultHash } from "@tessera/identity/result-manifest";
import { verifyComputeCompletionAsync } from "@tessera/identity/validation-bundle";
import type { Artifact } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import type { JobResult } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { invalidArgument, JobServerError } from "../errors.js";
import type { JobRow } from "../jobs/job-row.js";

/** Looks an artifact up by id (the artifact store's getArtifact). */
export type ArtifactLookup = (artifactId: string) => Promise<Artifact | undefined>;

const ARTIFACT_URI = /^artifact:\/\/(.+)$/;

/**
 * Checks a COMPLETED result of `job` reported by `node`.
 * @throws JobServerError invalid_argument naming the field; unauthenticated for a completion
 * signature that does not verify.
 */
export async function checkCompletedResult(
  job: JobRow,
  node: string,
  result: JobResult,
  lookup: ArtifactLookup,
): Promise<void> {
  const completion = result.computeCompletion;
  if (completion === undefined) {
    throw invalidArgument("result.compute_completion", "is required with state COMPLETED");
  }
  if (completion.requestId !== job.job_id) {
    throw invalidArgument("result.compute_completion.request_id", "must be the job id");
  }
  if (completion.computeNodeAddress !== node) {
    throw invalidArgument(
      "result.compute_completion.compute_node_address",
      "must be the reporting node",
    );
  }
  if (!(await verifyComputeCompletionAsync(completion))) {
    throw new JobServerError(
      "unauthenticated",
      "result.compute_completion.signature: does not verify against the node's key",
    );
  }
  if (result.artifacts.length === 0) {
    throw invalidArgument("result.artifacts", "a completed result needs at least one artifact");
  }
  let expected: Uint8Array;
  try {
    expected = resultHash(
      result.artifacts.map((artifact) => ({
        name: artifact.name,
        digest: artifact.content?.digest ?? "",
      })),
    );
  } catch (error) {
    if (error instanceof ResultManifestError)
      throw invalidArgument("result.artifacts", error.message);
    throw error;
  }
  if (!bytesEqual(expected, completion.resultHash)) {
    throw invalidArgument(
      "result.compute_completion.result_hash",
      "is not the SHA-256 of the artifacts' manifest",
    );
  }
  for (const [index, artifact] of result.artifacts.entries()) {
    const field = `result.artifacts[${index}]`;
    const content = artifact.content;
    const id = ARTIFACT_URI.exec(content?.uri ?? "")?.[1];
    if (content === undefined || id === undefined) {
      throw invalidArgument(
        `${field}.content.uri`,
        "must be artifact://<id> of an uploaded artifact",
      );
    }
    const stored = await lookup(id);
    if (stored === undefined) {
      throw invalidArgument(`${field}.content.uri`, `artifact ${id} does not exist`);
    }
    if (stored.jobId !== job.job_id) {
      throw invalidArgument(`${field}.content.uri`, `artifact ${id} was not uploaded for this job`);
    }
    if (stored.ownerAddress !== node) {
      throw invalidArgument(`${field}.content.uri`, `artifact ${id} was not uploaded by this node`);
    }
    if (stored.content?.digest !== content.digest) {
      throw invalidArgument(
        `${field}.content.digest`,
        `is not the digest of artifact ${id} (${stored.content?.digest ?? "none"})`,
      );
    }
  }
}
