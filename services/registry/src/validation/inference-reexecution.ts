/**
 * Plugs @tessera/ml's inference re-executor into completion validation: the registry and each
 * validator re-run a finished inference task on its input (sent as evidence by the gateway) with
 * the hosted model, and agree only when the node's output matches within a tolerance. The model
 * is the one the routed node's signed record names for the task's model id, fetched by content
 * hash: over http(s), or from a `file://` path inside MODEL_DIRS (a shared model folder; any other
 * local path is refused, so a node cannot make validators read arbitrary files). When MODELS_FILE
 * pins a model id to a digest, a node naming other bytes for it is not believed.
 */
import { realpath } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { createContentCache } from "@tessera/ml/content-cache";
import { createInferenceReexecutor } from "@tessera/ml/inference-reexecutor";
import { readModelCatalog } from "@tessera/ml/model-catalog";
import type { ContentRef } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { CompletionExecutor } from "./executors.js";
import type { ValidationSources } from "./sources.js";

/** Where models may come from. */
export interface InferenceReexecutionOptions {
  readonly sources: Pick<ValidationSources, "getNode">;
  /** Directory of the model cache. */
  readonly dataDir: string;
  /** Folders `file://` model URIs may point into; empty refuses every `file://` model. */
  readonly modelDirs: readonly string[];
  /** A model catalog pinning model ids to digests; "" pins nothing. */
  readonly modelsFile: string;
}

/** Why a model cannot be used to re-run a task; the validator then refuses to sign. */
export class ModelUnavailableError extends Error {
  override readonly name = "ModelUnavailableError";
}

async function insideAny(path: string, dirs: readonly string[]): Promise<boolean> {
  const real = await realpath(path).catch(() => resolve(path));
  for (const dir of dirs) {
    const root = await realpath(dir).catch(() => resolve(dir));
    if (real === root || real.startsWith(root + sep)) return true;
  }
  return false;
}

/** The inference re-executor of this process, and what closes its warm sessions. */
export async function createInferenceReexecution(
  options: InferenceReexecutionOptions,
): Promise<CompletionExecutor & { close(): Promise<void> }> {
  const pinned = new Map<string, string>();
  if (options.modelsFile !== "") {
    for (const model of await readModelCatalog(options.modelsFile)) {
      pinned.set(model.descriptor.modelId, model.descriptor.content?.digest ?? "");
    }
  }
  const cache = createContentCache({ dir: join(options.dataDir, "model-cache") });
  return createInferenceReexecutor({
    cache,
    async resolveModel(task): Promise<ContentRef> {
      const entry = await options.sources.getNode(task.computeNodeAddress);
      const model = entry?.record?.models.find((m) => m.modelId === task.modelId);
      const content = model?.content;
      if (content === undefined || content.digest === "") {
        throw new ModelUnavailableError(
          `node ${task.computeNodeAddress} names no content for model "${task.modelId}"`,
        );
      }
      const want = pinned.get(task.modelId);
      if (want !== undefined && want !== content.digest) {
        throw new ModelUnavailableError(
          `node ${task.computeNodeAddress} names ${content.digest} for model "${task.modelId}", pinned to ${want}`,
        );
      }
      if (content.uri.startsWith("file:")) {
        const path = fileURLToPath(content.uri);
        if (!(await insideAny(path, options.modelDirs))) {
          throw new ModelUnavailableError(
            `model "${task.modelId}" is at ${content.uri}, outside MODEL_DIRS`,
          );
        }
      }
      return content;
    },
  });
}
