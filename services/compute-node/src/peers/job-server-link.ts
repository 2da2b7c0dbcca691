/**
 * Wires the node to its job server: one signed HTTP/2 transport for NodeService,
 * JobStatusService and ArtifactService, a content cache that downloads "artifact://" inputs from
 * the job server, result uploads, and the agent that runs it all.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { KeyPair } from "@tessera/identity/keys";
import { createContentCache } from "@tessera/ml/content-cache";
import { JobInputError } from "@tessera/ml/errors";
import type { NodeRecord } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { ArtifactService } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { JobStatusService } from "@tessera/proto/tessera/job/v1/job_status_service_pb.js";
import { NodeService } from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import type { Logger } from "@tessera/runtime";
import { parseArtifactReference } from "@tessera/sdk/artifact-uri";
import { downloadArtifact, uploadArtifact } from "@tessera/sdk/artifacts";
import type { Capacity } from "../agent/capacity.js";
import { resolveJobInputs, restrictLocalFiles } from "../agent/job-inputs.js";
import { JobRun } from "../agent/job-run.js";
import { type LiveLoad, NodeAgent } from "../agent/node-agent.js";
import {
  type JobProcessOptions,
  type JobProcessOutcome,
  runJobInProcess,
} from "../runner/job-process.js";
import { createSignedTransport } from "./signed-transport.js";

/** Options of {@link connectJobServer}. */
export interface JobServerLinkOptions {
  /** The job server's base URL. */
  readonly baseUrl: string;
  /** The job server's address (the target of every signature). */
  readonly address: string;
  readonly keyPair: KeyPair;
  /** The node's nonce source, shared with its other signed transports. */
  readonly nonceSource: () => bigint;
  /** The node's sealed record. */
  readonly record: NodeRecord;
  readonly capacity: Capacity;
  /** The node's data directory: `cache/` (content) and `jobs/` (work directories) go there. */
  readonly dataDir: string;
  /** Directories whose files jobs may read through "file://" references. */
  readonly localDataDirs: readonly string[];
  readonly measure: () => LiveLoad;
  /** How long running jobs get to give their leases back on shutdown. */
  readonly shutdownGraceMs: number;
  readonly logger: Logger;
  /** Runs one job's process; default {@link runJobInProcess}. */
  readonly runProcess?: ((options: JobProcessOptions) => Promise<JobProcessOutcome>) | undefined;
  /** Least time between two progress reports of a job; default 1,000 ms. */
  readonly progressIntervalMs?: number | undefined;
}

/** The agent and the connection under it. */
export interface JobServerLink {
  readonly agent: NodeAgent;
  /** Closes the connection (after `agent.close()`); safe to call twice. */
  close(): void;
}

/** Connects the node to its job server; the agent is created but not started. */
export async function connectJobServer(options: JobServerLinkOptions): Promise<JobServerLink> {
  const { keyPair, logger } = options;
  const connection = createSignedTransport({
    baseUrl: options.baseUrl,
    target: options.address,
    keyPair,
    nonceSource: options.nonceSource,
  });
  const node = createClient(NodeService, connection.transport);
  const status = createClient(JobStatusService, connection.transport);
  const artifacts = createClient(ArtifactService, connection.transport);
  const workRoot = join(options.dataDir, "jobs");
  // Work directories of jobs a previous run of the node left behind: no job survives a restart.
  await rm(workRoot, { recursive: true, force: true });
  await mkdir(workRoot, { recursive: true });

  const cache = restrictLocalFiles(
    createContentCache({
      dir: join(options.dataDir, "cache"),
      fetchArtifact: async (ref, destPath, signal) => {
        const id = parseArtifactReference(ref.uri);
        if (id === undefined) throw new JobInputError(`${ref.uri} is not an artifact reference`);
        try {
          await downloadArtifact(artifacts, id, destPath, { signal });
        } catch (error) {
          // The job names an artifact the job server does not hold: the job's fault.
          if (ConnectError.from(error).code === Code.NotFound) {
            throw new JobInputError(`artifact ${id} does not exist on the job server`);
          }
          throw error;
        }
      },
    }),
    options.localDataDirs,
  );
  const runProcess = options.runProcess ?? runJobInProcess;

  const agent = new NodeAgent({
    keyPair,
    record: options.record,
    node,
    capacity: options.capacity,
    measure: options.measure,
    logger,
    shutdownGraceMs: options.shutdownGraceMs,
    createRun: (assignment, limits) =>
      new JobRun(assignment, limits, {
        keyPair,
        node,
        status,
        resolveInputs: (lease, signal) => resolveJobInputs(lease, cache, signal),
        isInputError: (error) => error instanceof JobInputError,
        runProcess,
        uploadArtifact: async (file, lease, signal) => {
          const artifact = await uploadArtifact(
            artifacts,
            { path: file.path },
            {
              name: file.name,
              mediaType: file.mediaType,
              jobId: lease.jobId,
              leaseId: lease.leaseId,
            },
            { signal },
          );
          if (artifact.content === undefined) {
            throw new ConnectError(
              `artifact ${file.name} came back without content`,
              Code.Internal,
            );
          }
          return artifact.content;
        },
        workRoot,
        logger,
        progressIntervalMs: options.progressIntervalMs,
      }),
  });
  return { agent, close: () => connection.close() };
}
