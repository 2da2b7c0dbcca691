/**
 * The models this gateway serves: the pinned catalog (MODELS_FILE) plus every model an accepted
 * node hosts. Pinning fixes a model's content: a node whose copy has another digest is not
 * accepted for it, so a task never runs on weights the operator did not approve.
 */
import type { ModelDescriptor } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { GatewayNode } from "../nodes/node-book.js";

/** See the module comment. */
export interface ModelDirectory {
  /** The node's models this gateway accepts: all, except pinned ones with another digest. */
  accept(models: readonly ModelDescriptor[]): Map<string, ModelDescriptor>;
  /** Why a node's model is refused, or undefined when accepted. */
  refusal(model: ModelDescriptor): string | undefined;
  /** The descriptor of `modelId`: pinned, else the first node's (by address); undefined if unknown. */
  describe(modelId: string, nodes: readonly GatewayNode[]): ModelDescriptor | undefined;
  /** Every served model id, sorted. */
  modelIds(nodes: readonly GatewayNode[]): string[];
}

/** A directory pinning `pinned` (empty: nothing pinned). */
export function createModelDirectory(pinned: readonly ModelDescriptor[]): ModelDirectory {
  const byId = new Map(pinned.map((model) => [model.modelId, model]));
  const refusal = (model: ModelDescriptor): string | undefined => {
    if (model.modelId === "") return "a model has no model_id";
    const pin = byId.get(model.modelId);
    if (pin === undefined || pin.content === undefined || pin.content.digest === "") {
      return undefined;
    }
    const digest = model.content?.digest ?? "";
    if (digest !== pin.content.digest) {
      return `model "${model.modelId}" has content ${digest || "(none)"}, pinned is ${pin.content.digest}`;
    }
    return undefined;
  };
  return {
    refusal,
    accept(models) {
      const accepted = new Map<string, ModelDescriptor>();
      for (const model of models) {
        if (refusal(model) === undefined && !accepted.has(model.modelId)) {
          accepted.set(model.modelId, model);
        }
      }
      return accepted;
    },
    describe(modelId, nodes) {
      const pin = byId.get(modelId);
      if (pin !== undefined) return pin;
      for (const node of nodes) {
        const model = node.accepted.get(modelId);
        if (model !== undefined) return model;
      }
      return undefined;
    },
    modelIds(nodes) {
      const ids = new Set(byId.keys());
      for (const node of nodes) for (const id of node.accepted.keys()) ids.add(id);
      return [...ids].sort();
    },
  };
}
