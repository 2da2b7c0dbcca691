/**
 * The models a node hosts: read from its catalog file at start, fetched and digest-checked
 * through the content cache, loaded once and kept warm by the ml model host (which batches
 * concurrent forwards per model). What the node publishes of them are their descriptors.
 */
import { create } from "@bufbuild/protobuf";
import type { ContentCache } from "@tessera/ml/content-cache";
import { readModelCatalog } from "@tessera/ml/model-catalog";
import { createModelHost, type HostedModel, type ModelHost } from "@tessera/ml/model-host";
import {
  type ModelDescriptor,
  ModelDescriptorSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { Logger } from "@tessera/runtime";

/** Options of {@link loadHostedModels}. */
export interface HostedModelsOptions {
  /** The catalog file; "" hosts nothing. */
  readonly modelsFile: string;
  /** Where model files are fetched to and checked against their digest. */
  readonly cache: ContentCache;
  readonly logger: Logger;
  /** Stops loading (e.g. the node is closed while it starts). */
  readonly signal?: AbortSignal | undefined;
}

/** The node's warm models. */
export interface HostedModels {
  /** The model host (undefined models are not hosted). */
  readonly host: ModelHost;
  /** Every hosted model, in catalog order. */
  readonly models: readonly HostedModel[];
  /** Largest batch (rows) any hosted model runs at once; 1 when nothing batches. */
  readonly maxBatchSize: number;
  /** Releases the sessions; safe to call twice. */
  close(): Promise<void>;
}

/**
 * The descriptor a node publishes for a hosted model (in its record and synapses): as loaded,
 * with `supports_backward` as the host decided. The content keeps its `uri` (the catalog's
 * absolute file:// path or http(s) URL): validators fetch the model from it to re-run tasks, and
 * its digest pins the exact bytes.
 */
export function publishedDescriptor(model: HostedModel): ModelDescriptor {
  return create(ModelDescriptorSchema, {
    ...model.descriptor,
    supportsBackward: model.supportsBackward,
  });
}

/**
 * Reads the catalog and loads every model in it, one after the other (each is digest-checked by
 * the cache). Any model that fails to load fails the whole start, naming the model: a node that
 * advertised a model it cannot run would only fail its tasks.
 */
export async function loadHostedModels(options: HostedModelsOptions): Promise<HostedModels> {
  const host = createModelHost({ cache: options.cache });
  const models: HostedModel[] = [];
  let maxBatchSize = 1;
  try {
    if (options.modelsFile !== "") {
      const catalog = await readModelCatalog(options.modelsFile);
      for (const entry of catalog) {
        const modelId = entry.descriptor.modelId;
        let hosted: HostedModel;
        try {
          hosted = await host.load(entry, options.signal);
        } catch (error) {
          throw new Error(`model ${modelId} from ${options.modelsFile} cannot be loaded`, {
            cause: error,
          });
        }
        models.push(hosted);
        maxBatchSize = Math.max(maxBatchSize, hosted.batching.maxBatchSize);
        options.logger.info(
          {
            modelId,
            digest: hosted.descriptor.content?.digest,
            inputs: hosted.descriptor.inputs.map((input) => input.name),
            outputs: hosted.descriptor.outputs.map((output) => output.name),
            supportsBackward: hosted.supportsBackward,
            maxBatchSize: hosted.batching.maxBatchSize,
          },
          "model loaded",
        );
      }
    }
  } catch (error) {
    await host.close();
    throw error;
  }
  return { host, models, maxBatchSize, close: () => host.close() };
}
