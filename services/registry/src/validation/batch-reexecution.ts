/**
 * Plugs @tessera/ml's batch re-executor into completion validation: with the job server's URL
 * and address configured, the registry and each validator re-run a sample of a batch job's
 * deterministic work (inference rows, evaluation metrics) before they sign a verdict, fetching the
 * job's model, dataset and outputs from the job server's ArtifactService as an allowed reader
 * (the job server's READERS must list them). Without them, completions are judged on signatures
 * and the result hash alone.
 */
import { join } from "node:path";
import type { KeyPair } from "@tessera/identity/keys";
import { createBatchReexecutor } from "@tessera/ml/batch-reexecutor";
import { ArtifactService } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { parseArtifactReference } from "@tessera/sdk/artifact-uri";
import { downloadArtifact } from "@tessera/sdk/artifacts";
import { openServiceClient } from "@tessera/sdk/service-client";
import type { CompletionExecutor } from "./executors.js";

/** Where the job server is and who asks it. */
export interface BatchReexecutionOptions {
  readonly jobServerUrl: string;
  readonly jobServerAddress: string;
  readonly keyPair: KeyPair;
  /** Directory of the re-executor's content cache. */
  readonly dataDir: string;
}

/** The executor and a function that closes its connection to the job server. */
export interface BatchReexecution {
  readonly executor: CompletionExecutor;
  close(): void;
}

/** A batch-job re-executor that downloads artifacts from the configured job server. */
export function createBatchReexecution(options: BatchReexecutionOptions): BatchReexecution {
  const { client, close } = openServiceClient(ArtifactService, {
    baseUrl: options.jobServerUrl,
    signer: { keyPair: options.keyPair, target: options.jobServerAddress },
  });
  const executor = createBatchReexecutor({
    cacheDir: join(options.dataDir, "reexecution-cache"),
    async fetchArtifact(ref, destPath, signal) {
      const artifactId = parseArtifactReference(ref.uri);
      if (artifactId === undefined) throw new Error(`not an artifact reference: ${ref.uri}`);
      await downloadArtifact(client, artifactId, destPath, { signal });
    },
  });
  return { executor, close };
}
