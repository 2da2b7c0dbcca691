/**
 * Who may read and upload the job server's artifacts (the hooks of ArtifactService):
 *
 * - read: the artifact's owner (the uploader), the owner of the job it belongs to, a node that
 *   holds or held a lease on that job or on a job whose spec reads the artifact's content (by
 *   digest), and the configured readers (validators re-checking results);
 * - upload for a job: the job's owner, or a node under its current lease of that job. Uploads
 *   without a job (inputs before a submit) are anyone's. A node uploading under a lease it held
 *   but lost is told so (failed_precondition); anyone else is refused (permission_denied).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Artifact } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import type { JobQueue } from "./jobs/job-queue.js";
import type { LeaseBook } from "./leases/lease-book.js";

/** What {@link createArtifactAccess} needs. */
export interface ArtifactAccessOptions {
  readonly queue: Pick<JobQueue, "get">;
  readonly leases: Pick<LeaseBook, "everLeased" | "everLeasedInput" | "holdsLease" | "lease">;
  /** Addresses that may read every artifact (READERS). */
  readonly readers: Iterable<string>;
}

/** The two hooks of ArtifactService. */
export interface ArtifactAccess {
  canRead(caller: string, artifact: Artifact): Promise<boolean>;
  /** Resolves to allow; throws a ConnectError (permission_denied, not_found) to refuse. */
  canUpload(caller: string, target: { jobId: string; leaseId: string }): Promise<void>;
}

/** The artifact hooks over the queue and the leases. */
export function createArtifactAccess(options: ArtifactAccessOptions): ArtifactAccess {
  const { queue, leases } = options;
  const readers = new Set(options.readers);
  return {
    async canRead(caller, artifact) {
      if (artifact.ownerAddress === caller || readers.has(caller)) return true;
      if (artifact.jobId !== "") {
        const job = await queue.get(artifact.jobId);
        if (job?.owner_address === caller) return true;
        if (await leases.everLeased(caller, artifact.jobId)) return true;
      }
      const digest = artifact.content?.digest ?? "";
      return digest !== "" && (await leases.everLeasedInput(caller, digest));
    },

    async canUpload(caller, target) {
      if (target.jobId === "") return;
      const job = await queue.get(target.jobId);
      if (job === undefined) {
        throw new ConnectError(`job ${target.jobId} does not exist`, Code.NotFound);
      }
      if (job.owner_address === caller) return;
      if (
        target.leaseId !== "" &&
        (await leases.holdsLease(caller, target.jobId, target.leaseId))
      ) {
        return;
      }
      const lease = target.leaseId === "" ? undefined : await leases.lease(target.leaseId);
      if (lease !== undefined && lease.nodeAddress === caller && lease.jobId === target.jobId) {
        throw new ConnectError(
          `lease ${target.leaseId} of job ${target.jobId} is no longer current (${lease.state}); stop working on it`,
          Code.FailedPrecondition,
        );
      }
      throw new ConnectError(
        target.leaseId === ""
          ? `only the owner of job ${target.jobId} or a node under its lease may upload for it (nodes name their lease_id)`
          : `lease ${target.leaseId} is not a current lease of job ${target.jobId} held by the caller`,
        Code.PermissionDenied,
      );
    },
  };
}
