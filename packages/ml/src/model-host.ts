/**
 * Hosting ONNX models for low-latency inference on a compute node: each catalog model is fetched
 * through the content cache (digest-checked), opened once as an onnxruntime session and kept
 * warm. forward() goes through the model's dynamic batcher, so concurrent tasks share one run.
 *
 * Backward (the vector-Jacobian product dL/dinput for a given dL/doutput) is supported for this
 * package's own ONNX exports (a Gemm + Relu/Sigmoid/Tanh/Softmax chain, see onnx-network.ts): the
 * same weights are loaded into a tfjs network and differentiated. Other graphs have
 * `supportsBackward` false and backward() throws {@link BackwardUnsupportedError}.
 */
import { readFile } from "node:fs/promises";
import { clone, create } from "@bufbuild/protobuf";
import * as tf from "@tensorflow/tfjs";
import {
  type ModelDescriptor,
  ModelDescriptorSchema,
  type TensorSpec,
  TensorSpecSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import * as ort from "onnxruntime-node";
import type { ContentCache } from "./content-cache.js";
import { createDynamicBatcher, type DynamicBatcher } from "./dynamic-batcher.js";
import { JobInputError } from "./errors.js";
import type { BatchingSettings, CatalogModel } from "./model-catalog.js";
import { type OnnxNetwork, onnxNetworkOf } from "./onnx-network.js";
import { fromOrtTensor, toOrtTensor } from "./ort-tensors.js";
import {
  bytesOfTyped,
  checkInputsAgainst,
  isDTypeName,
  type RawTensor,
  TensorError,
  typedView,
} from "./tensors.js";
import { createNetwork, ensureCpuBackend, type TfNetwork } from "./tf-network.js";

/** Prefix of gradient tensor names: "grad/<output name>" in, "grad/<input name>" out. */
export const GRAD_PREFIX = "grad/";

/** A model that is warm and ready to run. */
export interface HostedModel {
  /** The catalog descriptor, inputs/outputs filled from the session when the catalog omits them. */
  readonly descriptor: ModelDescriptor;
  /** Whether backward() works: the graph is recognized and the catalog does not disable it. */
  readonly supportsBackward: boolean;
  /** Effective batching: maxBatchSize 1 when an input has a fixed dim 0. */
  readonly batching: BatchingSettings;
  /**
   * Runs the model on `inputs` (checked against the declared inputs, in any order) and returns
   * the outputs in declared order, batched with concurrent calls unless batching is off.
   * @throws TensorError for inputs that do not fit; the signal's reason when aborted.
   */
  forward(inputs: readonly RawTensor[], signal?: AbortSignal): Promise<RawTensor[]>;
  /**
   * The gradient of the loss with respect to every input ("grad/<input name>", float32, the
   * input's shape), given the gradient with respect to every output (`outputGrads` named
   * "grad/<output name>", float32, the output's shape for these inputs).
   * @throws BackwardUnsupportedError when the model has no backward; TensorError for tensors
   *   that do not fit.
   */
  backward(
    inputs: readonly RawTensor[],
    outputGrads: readonly RawTensor[],
    signal?: AbortSignal,
  ): Promise<RawTensor[]>;
  /** Runs and rows through the batcher so far. */
  stats(): { batches: number; rows: number };
}

/** The models a node hosts. */
export interface ModelHost {
  /**
   * Fetches, verifies and opens `model` (once: loading a loaded model id returns it).
   * @throws JobInputError when the content does not match its digest, onnxruntime refuses it, or
   *   the catalog's inputs/outputs contradict the graph; ContentUnavailableError when it cannot be
   *   fetched.
   */
  load(model: CatalogModel, signal?: AbortSignal): Promise<HostedModel>;
  /** A loaded model by id. */
  get(modelId: string): HostedModel | undefined;
  /** Every loaded model, in load order. */
  list(): HostedModel[];
  /** Closes batchers and releases sessions; safe to call twice. */
  close(): Promise<void>;
}

/** Options of {@link createModelHost}. */
export interface ModelHostOptions {
  /** Where model content is fetched and verified. */
  readonly cache: ContentCache;
  /** Batch concurrent forwards (default true); false runs every forward alone (benchmarks). */
  readonly batching?: boolean | undefined;
  /** Threads onnxruntime uses inside an operator; default onnxruntime's choice. */
  readonly intraOpNumThreads?: number | undefined;
}

/** The model cannot compute gradients; a service answers FAILED_PRECONDITION. */
export class BackwardUnsupportedError extends Error {
  override readonly name = "BackwardUnsupportedError";
  readonly code = "failed_precondition" as const;
}

function specsFromSession(
  metadata: readonly ort.InferenceSession.ValueMetadata[],
  which: string,
): TensorSpec[] {
  return metadata.map((m) => {
    if (!m.isTensor) throw new JobInputError(`the model's ${which} ${m.name} is not a tensor`);
    if (!isDTypeName(m.type)) {
      throw new JobInputError(`the model's ${which} ${m.name} has unsupported type ${m.type}`);
    }
    const shape = m.shape.map((d) => (typeof d === "number" && d >= 0 ? BigInt(d) : -1n));
    return create(TensorSpecSchema, { name: m.name, dtype: m.type, shape });
  });
}

/** The declared specs, checked against the graph's, or the graph's when none are declared. */
function reconcile(
  modelId: string,
  which: "input" | "output",
  declared: readonly TensorSpec[],
  graph: readonly TensorSpec[],
): TensorSpec[] {
  if (declared.length === 0) return [...graph];
  const names = graph.map((s) => s.name).join(", ");
  for (const spec of declared) {
    const actual = graph.find((s) => s.name === spec.name);
    if (actual === undefined) {
      throw new JobInputError(
        `model ${modelId}: catalog ${which} "${spec.name}" is not in the graph (${names})`,
      );
    }
    if (actual.dtype !== spec.dtype) {
      throw new JobInputError(
        `model ${modelId}: catalog ${which} "${spec.name}" is ${spec.dtype}, the graph's is ${actual.dtype}`,
      );
    }
    // The graph's fixed dimensions win; the catalog may only fix what the graph leaves dynamic.
    const fits =
      actual.shape.length === spec.shape.length &&
      actual.shape.every((d, i) => d < 0n || spec.shape[i] === d);
    if (!fits) {
      throw new JobInputError(
        `model ${modelId}: catalog ${which} "${spec.name}" has shape [${spec.shape.join(",")}], the graph's is [${actual.shape.join(",")}]`,
      );
    }
  }
  if (which === "input" && declared.length !== graph.length) {
    throw new JobInputError(
      `model ${modelId}: the catalog declares ${declared.length} inputs, the graph has ${graph.length} (${names})`,
    );
  }
  return [...declared];
}

function tensor2d(t: RawTensor): tf.Tensor2D {
  const [rows = 0, cols = 0] = t.shape;
  return tf.tensor2d(typedView(t) as Float32Array, [rows, cols], "float32");
}

function checkGrad(grad: RawTensor | undefined, name: string, shape: readonly number[]): RawTensor {
  const expected = `${GRAD_PREFIX}${name}`;
  if (grad === undefined) throw new TensorError(`tensor "${expected}": gradient is missing`);
  if (grad.dtype !== "float32") {
    throw new TensorError(`tensor "${expected}": dtype ${grad.dtype}, gradients are float32`);
  }
  if (grad.shape.join(",") !== shape.join(",")) {
    throw new TensorError(
      `tensor "${expected}": shape [${grad.shape.join(",")}], the output's is [${shape.join(",")}]`,
    );
  }
  return grad;
}

interface Loaded extends HostedModel {
  readonly digest: string;
  dispose(): Promise<void>;
}

/** A host of warm models; see the module comment. */
export function createModelHost(options: ModelHostOptions): ModelHost {
  const batchingOn = options.batching ?? true;
  const loaded = new Map<string, Promise<Loaded>>();
  const ready = new Map<string, Loaded>();
  let closed = false;

  async function open(model: CatalogModel, signal: AbortSignal): Promise<Loaded> {
    const catalog = model.descriptor;
    const content = catalog.content;
    if (content === undefined) throw new JobInputError(`model ${catalog.modelId} has no content`);
    const path = await options.cache.resolve(content, signal);
    const bytes = await readFile(path);
    signal.throwIfAborted();
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, {
        executionMode: "sequential",
        graphOptimizationLevel: "all",
        logSeverityLevel: 3,
        // Idle operator threads sleep instead of spin-waiting for the next run: a node's runs come
        // in bursts between network round trips, and spinning threads took the CPU its event loop
        // (decoding, signing, sending results) needed, costing more than the wake-up they save.
        extra: {
          session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } },
        },
        ...(options.intraOpNumThreads === undefined
          ? {}
          : { intraOpNumThreads: options.intraOpNumThreads }),
      });
    } catch (error) {
      throw new JobInputError(
        `model ${catalog.modelId}: onnxruntime cannot load it: ${(error as Error).message.slice(0, 300)}`,
      );
    }
    let network: TfNetwork | undefined;
    let batcher: DynamicBatcher | undefined;
    try {
      const descriptor = clone(ModelDescriptorSchema, catalog);
      const graphInputs = specsFromSession(session.inputMetadata, "input");
      descriptor.inputs = reconcile(catalog.modelId, "input", catalog.inputs, graphInputs);
      descriptor.outputs = reconcile(
        catalog.modelId,
        "output",
        catalog.outputs,
        specsFromSession(session.outputMetadata, "output"),
      );
      const recognized: OnnxNetwork | undefined = catalog.supportsBackward
        ? onnxNetworkOf(bytes)
        : undefined;
      if (recognized !== undefined) {
        await ensureCpuBackend();
        network = createNetwork(recognized.model, recognized.inputFeatures, {
          weights: recognized.weights,
        });
      }
      descriptor.supportsBackward = network !== undefined;
      const batchable = [...graphInputs, ...descriptor.inputs].every(
        (s) => s.shape.length > 0 && s.shape[0] === -1n,
      );
      const batching: BatchingSettings = batchable
        ? model.batching
        : { maxBatchSize: 1, maxDelayMs: 0 };
      const outputNames = descriptor.outputs.map((s) => s.name);

      const runSession = async (inputs: readonly RawTensor[]): Promise<RawTensor[]> => {
        const feeds: Record<string, ort.Tensor> = {};
        for (const t of inputs) feeds[t.name] = toOrtTensor(t);
        const results = await session.run(feeds, outputNames);
        return outputNames.map((name) => {
          const out = results[name];
          if (out === undefined) throw new Error(`the model did not produce output ${name}`);
          return fromOrtTensor(name, out);
        });
      };
      if (batchingOn) {
        batcher = createDynamicBatcher({ ...batching, runBatch: runSession });
      }
      let direct = { batches: 0, rows: 0 };
      const ordered = (inputs: readonly RawTensor[]): RawTensor[] => {
        checkInputsAgainst(inputs, descriptor.inputs);
        return descriptor.inputs.map((s) => inputs.find((t) => t.name === s.name) as RawTensor);
      };
      const tfNetwork = network;
      const disposeAll = async () => {
        batcher?.close();
        tfNetwork?.dispose();
        await session.release();
      };
      const hosted: Loaded = {
        descriptor,
        digest: content.digest,
        supportsBackward: tfNetwork !== undefined,
        batching,
        async forward(inputs, signal) {
          signal?.throwIfAborted();
          const feeds = ordered(inputs);
          if (batcher !== undefined) return batcher.run(feeds, signal);
          const outputs = await runSession(feeds);
          direct = { batches: direct.batches + 1, rows: direct.rows + (feeds[0]?.shape[0] ?? 1) };
          signal?.throwIfAborted();
          return outputs;
        },
        async backward(inputs, outputGrads, signal) {
          if (tfNetwork === undefined || recognized === undefined) {
            throw new BackwardUnsupportedError(
              `model ${descriptor.modelId} does not support backward`,
            );
          }
          signal?.throwIfAborted();
          const [input] = ordered(inputs);
          if (input === undefined) throw new TensorError("the model has no input");
          const rows = input.shape[0] ?? 0;
          const units = recognized.model.layers.at(-1);
          const outShape = [rows, units?.type === "dense" ? units.units : 0];
          const known = new Set([`${GRAD_PREFIX}${recognized.outputName}`]);
          for (const g of outputGrads) {
            if (!known.has(g.name)) {
              throw new TensorError(
                `tensor "${g.name}": not a gradient of an output (${[...known].join(", ")})`,
              );
            }
          }
          const dy = checkGrad(
            outputGrads.find((g) => g.name === `${GRAD_PREFIX}${recognized.outputName}`),
            recognized.outputName,
            outShape,
          );
          const gradient = tf.tidy(() => {
            const f = (x: tf.Tensor) => tfNetwork.forward(x as tf.Tensor2D).output;
            return tf.grad(f)(tensor2d(input), tensor2d(dy)).dataSync() as Float32Array;
          });
          signal?.throwIfAborted();
          return [
            {
              name: `${GRAD_PREFIX}${input.name}`,
              dtype: "float32",
              shape: [...input.shape],
              data: bytesOfTyped(Float32Array.from(gradient)),
            },
          ];
        },
        stats() {
          return batcher?.stats() ?? direct;
        },
        dispose: disposeAll,
      };
      return hosted;
    } catch (error) {
      batcher?.close();
      network?.dispose();
      await session.release();
      throw error;
    }
  }

  return {
    async load(model, signal) {
      if (closed) throw new Error("the model host is closed");
      const id = model.descriptor.modelId;
      const existing = loaded.get(id);
      if (existing !== undefined) {
        const hosted = await existing;
        if (hosted.digest !== model.descriptor.content?.digest) {
          throw new JobInputError(`model ${id} is already loaded with another digest`);
        }
        return hosted;
      }
      const promise = open(model, signal ?? new AbortController().signal);
      loaded.set(id, promise);
      try {
        const hosted = await promise;
        ready.set(id, hosted);
        return hosted;
      } catch (error) {
        loaded.delete(id);
        throw error;
      }
    },
    get(modelId) {
      return ready.get(modelId);
    },
    list() {
      return [...ready.values()];
    },
    async close() {
      if (closed) return;
      closed = true;
      const all = [...ready.values()];
      ready.clear();
      loaded.clear();
      await Promise.all(all.map((m) => m.dispose()));
    },
  };
}
