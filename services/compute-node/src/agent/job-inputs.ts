/**
 * A lease's inputs as local files: the model, the dataset (the lease's own shard when it has one)
 * and the weights to start from (a federated round's global weights, or the spec's initial
 * weights), each fetched through the node's content cache.
 */
import { realpath } from "node:fs/promises";
import { isAbsolute, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { JobInputError } from "@tessera/ml/errors";
import type { ContentRef } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { Assignment } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { LocalJobInput } from "../runner/job-process.js";

/** Turns a content reference into a local file whose bytes match its digest. */
export interface ContentResolver {
  resolve(ref: ContentRef, signal: AbortSignal): Promise<string>;
}

/** Whether a reference names any content (a digest or a place to fetch it from). */
function isSet(ref: ContentRef | undefined): ref is ContentRef {
  return ref !== undefined && (ref.digest !== "" || ref.uri !== "");
}

/** Fetches the assignment's inputs (in parallel) and returns their local paths. */
export async function resolveJobInputs(
  assignment: Assignment,
  resolver: ContentResolver,
  signal: AbortSignal,
): Promise<LocalJobInput> {
  const spec = assignment.spec;
  if (spec === undefined) throw new TypeError("the assignment has no job spec");
  const model = spec.model?.content;
  const dataset = isSet(assignment.dataset) ? assignment.dataset : spec.dataset;
  const weights = isSet(assignment.globalWeights) ? assignment.globalWeights : spec.initialWeights;
  const fetch = (ref: ContentRef | undefined) =>
    isSet(ref) ? resolver.resolve(ref, signal) : Promise.resolve(undefined);
  const [modelPath, datasetPath, initialWeightsPath] = await Promise.all([
    fetch(model),
    fetch(dataset),
    fetch(weights),
  ]);
  return {
    spec,
    modelPath,
    modelMediaType: isSet(model) ? model.mediaType : undefined,
    datasetPath,
    datasetMediaType: isSet(dataset) ? dataset.mediaType : undefined,
    initialWeightsPath,
  };
}

/** Whether `path` is `root` or inside it. */
function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/**
 * `resolver` restricted to local files ("file://" references) inside `roots`: a job may read the
 * node's own datasets there, and nothing else on the machine (symbolic links are followed before
 * the check). Other references pass through.
 * @throws JobInputError from `resolve` for a file outside the roots (or any file when there are
 * none), or one that does not exist.
 */
export function restrictLocalFiles(
  resolver: ContentResolver,
  roots: readonly string[],
): ContentResolver {
  const realRoots = Promise.all(roots.map((root) => realpath(root).catch(() => undefined)));
  return {
    async resolve(ref, signal) {
      if (ref.uri.startsWith("file:")) {
        let path: string;
        try {
          path = await realpath(fileURLToPath(ref.uri));
        } catch {
          throw new JobInputError(`content ${ref.digest}: its file:// source is not on this node`);
        }
        const allowed = (await realRoots).some(
          (root) => root !== undefined && isInside(root, path),
        );
        if (!allowed) {
          throw new JobInputError(
            `content ${ref.digest}: this node shares no local data at that path (see its LOCAL_DATA_DIRS)`,
          );
        }
      }
      return resolver.resolve(ref, signal);
    },
  };
}
