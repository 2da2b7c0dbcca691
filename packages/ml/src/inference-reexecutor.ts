/**
 * Completion validation of inference tasks by re-execution: a validator's CompletionExecutor
 * (same structural interface as batch-reexecutor.ts) for evidence whose input is raw tensors or
 * JSON (`input_data`) and whose result is raw tensors (`result_data`).
 *
 * It checks SHA-256(result_data) against the signed result hash, resolves the task's model
 * (through `resolveModel`, e.g. the registry's NodeRecord or the gateway's pinned catalog) and
 * fetches it into the content cache (digest-checked), decodes the input as the node had to, runs
 * the model once, and compares every output element with the node's bytes read with the
 * validator's own output specs: floats agree when |claimed − recomputed| ≤ tolerance ×
 * max(1, |recomputed|), everything else must be equal; a different byte length disagrees.
 * Disagreement is a verdict whose reason names the output and element (never values or bytes);
 * failing to resolve, fetch or run the model throws, so the validator refuses to sign.
 */
import { create } from "@bufbuild/protobuf";
import { bytesEqual, sha256 } from "@tessera/identity/hash";
import { ModelDescriptorSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type {
  CompletionExecutor,
  ReexecutionTask,
  ReexecutionVerdict,
} from "./batch-reexecutor.js";
import type { ContentCache, ContentRefLike } from "./content-cache.js";
import { createModelHost } from "./model-host.js";
import {
  decodeTaskInput,
  float16Value,
  JSON_MEDIA_TYPE,
  RAW_TENSORS_MEDIA_TYPE,
  type RawTensor,
  specOf,
  stringElements,
  TensorError,
  typedView,
  unpackRawTensors,
} from "./tensors.js";

/** Name of the executor, shown in verdict reasons. */
export const INFERENCE_REEXECUTOR_NAME = "tessera-ml-inference";

/** Options of {@link createInferenceReexecutor}. */
export interface InferenceReexecutorOptions {
  /** The content of the model the task names, as the network knows it; undefined when unknown. */
  resolveModel(
    task: { modelId: string; subnetId: bigint; computeNodeAddress: string },
    signal: AbortSignal,
  ): Promise<ContentRefLike | undefined>;
  /** Where models are fetched and verified. */
  readonly cache: ContentCache;
  /** Relative/absolute tolerance of a float comparison; default 1e-4. */
  readonly tolerance?: number | undefined;
}

/** The executor, plus close() to release its warm sessions. */
export interface InferenceReexecutor extends CompletionExecutor {
  /** Releases the opened models; safe to call twice. */
  close(): Promise<void>;
}

function baseMediaType(mediaType: string): string {
  return (mediaType.split(";")[0] ?? "").trim().toLowerCase();
}

function numbersOf(t: RawTensor): ArrayLike<number | bigint | string> {
  if (t.dtype === "string") return stringElements(t);
  const typed = typedView(t);
  if (t.dtype === "float16") return Array.from(typed as Uint16Array, float16Value);
  return typed as ArrayLike<number | bigint>;
}

/** A re-executor of inference tasks; see the module comment. */
export function createInferenceReexecutor(
  options: InferenceReexecutorOptions,
): InferenceReexecutor {
  const tolerance = options.tolerance ?? 1e-4;
  const host = createModelHost({ cache: options.cache, batching: false });
  const disagree = (reason: string): ReexecutionVerdict => ({
    agrees: false,
    reason: `${INFERENCE_REEXECUTOR_NAME}: ${reason}`,
  });
  const floating = new Set(["float32", "float64", "float16"]);

  function compare(claimed: RawTensor, recomputed: RawTensor): string | undefined {
    const a = numbersOf(claimed);
    const b = numbersOf(recomputed);
    const isFloat = floating.has(recomputed.dtype);
    for (let i = 0; i < b.length; i++) {
      const x = a[i];
      const y = b[i];
      if (isFloat) {
        const u = x as number;
        const v = y as number;
        if (
          Number.isNaN(v)
            ? Number.isNaN(u)
            : Math.abs(u - v) <= tolerance * Math.max(1, Math.abs(v))
        )
          continue;
        if (u === v) continue; // equal infinities
      } else if (x === y) {
        continue;
      }
      return `output "${recomputed.name}" element ${i} differs from re-execution${isFloat ? ` beyond tolerance ${tolerance}` : ""}`;
    }
    return undefined;
  }

  return {
    name: INFERENCE_REEXECUTOR_NAME,
    supports(task: ReexecutionTask) {
      const e = task.evidence;
      const inputType = baseMediaType(e.inputMediaType);
      return (
        e.input.case === "inputData" &&
        (inputType === RAW_TENSORS_MEDIA_TYPE || inputType === JSON_MEDIA_TYPE) &&
        e.result.case === "resultData" &&
        baseMediaType(e.resultMediaType) === RAW_TENSORS_MEDIA_TYPE
      );
    },
    async reexecute(task: ReexecutionTask, signal: AbortSignal) {
      const e = task.evidence;
      if (e.input.case !== "inputData" || e.result.case !== "resultData") {
        throw new Error("the evidence holds no input data and result data");
      }
      const result = e.result.value;
      if (!bytesEqual(sha256(result), task.resultHash)) {
        return disagree("the result does not hash to the signed result hash");
      }
      const ref = await options.resolveModel(
        {
          modelId: task.modelId,
          subnetId: task.subnetId,
          computeNodeAddress: task.computeNodeAddress,
        },
        signal,
      );
      if (ref === undefined)
        throw new Error(`model ${task.modelId} is not known to this validator`);
      // Keyed by digest: tasks of one model content share a warm session.
      const hosted = await host.load(
        {
          descriptor: create(ModelDescriptorSchema, {
            modelId: ref.digest.replace(":", "-"),
            content: { digest: ref.digest, uri: ref.uri, sizeBytes: BigInt(ref.sizeBytes) },
            supportsBackward: false,
          }),
          batching: { maxBatchSize: 1, maxDelayMs: 0 },
        },
        signal,
      );
      let inputs: RawTensor[];
      try {
        inputs = decodeTaskInput(
          e.input.value,
          e.inputMediaType,
          e.inputTensors,
          hosted.descriptor,
        );
      } catch (error) {
        if (error instanceof TensorError) {
          return disagree(
            `the node returned a result for input the model refuses: ${error.message}`,
          );
        }
        throw error;
      }
      const recomputed = await hosted.forward(inputs, signal);
      const expectedBytes = recomputed.reduce((n, t) => n + t.data.length, 0);
      if (result.length !== expectedBytes) {
        return disagree(
          `the result has ${result.length} bytes, the model's outputs for this input take ${expectedBytes}`,
        );
      }
      let claimed: RawTensor[];
      try {
        claimed = unpackRawTensors(result, recomputed.map(specOf));
      } catch (error) {
        if (error instanceof TensorError)
          return disagree(`the result is malformed: ${error.message}`);
        throw error;
      }
      for (const [i, t] of recomputed.entries()) {
        const reason = compare(claimed[i] as RawTensor, t);
        if (reason !== undefined) return disagree(reason);
      }
      return { agrees: true };
    },
    close: () => host.close(),
  };
}
