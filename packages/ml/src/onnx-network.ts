/**
 * Recognizes this package's own ONNX exports (see onnx-export.ts): one float32 input
 * [batch, features], a chain of Gemm nodes (initializers "dense_<i>.kernel" [in, units] and
 * "dense_<i>.bias" [units], no transposes, alpha = beta = 1) each followed by nothing, Relu,
 * Sigmoid, Tanh or Softmax over the last axis, ending in the graph's single output. Such a graph
 * is a sequential network whose weights tfjs can differentiate. Any other graph is not recognized.
 */
import type { onnx as OnnxTypes } from "onnx-proto";
import { JobInputError } from "./errors.js";
import { int64ToNumber, type ModelProto, onnx } from "./onnx-proto.js";
import { type Activation, SEQUENTIAL_FORMAT, type SequentialModel } from "./sequential-model.js";
import { initializerName, type NetworkWeights, weightsFromOnnx } from "./weights.js";

/** A recognized export: the layer list (loss "mse": only the forward pass matters) and its weights. */
export interface OnnxNetwork {
  readonly model: SequentialModel;
  readonly inputFeatures: number;
  readonly weights: NetworkWeights;
  readonly inputName: string;
  readonly outputName: string;
}

const ACTIVATIONS: Readonly<Record<string, Activation>> = {
  Relu: "relu",
  Sigmoid: "sigmoid",
  Tanh: "tanh",
  Softmax: "softmax",
};

type Attribute = OnnxTypes.IAttributeProto;

function attributeNumber(attr: Attribute): number {
  if (attr.type === onnx.AttributeProto.AttributeType.FLOAT) return attr.f ?? 0;
  return int64ToNumber(attr.i as number | { toNumber(): number } | null | undefined);
}

function plainGemm(attributes: readonly Attribute[]): boolean {
  const defaults: Record<string, number> = { alpha: 1, beta: 1, transA: 0, transB: 0 };
  return attributes.every((a) => {
    const expected = defaults[a.name ?? ""];
    return expected !== undefined && attributeNumber(a) === expected;
  });
}

function lastAxisSoftmax(attributes: readonly Attribute[]): boolean {
  return attributes.every((a) => a.name === "axis" && [-1, 1].includes(attributeNumber(a)));
}

/** The network of an ONNX model exported by this package, or undefined for any other graph. */
export function onnxNetworkOf(bytes: Uint8Array): OnnxNetwork | undefined {
  let proto: ModelProto;
  try {
    proto = onnx.ModelProto.decode(bytes);
  } catch {
    return undefined;
  }
  const graph = proto.graph;
  const input = graph?.input?.filter(
    (i) => !(graph.initializer ?? []).some((t) => t.name === i.name),
  );
  if (graph == null || input?.length !== 1 || graph.output?.length !== 1) return undefined;
  const inputInfo = input[0];
  const tensorType = inputInfo?.type?.tensorType;
  const dims = tensorType?.shape?.dim ?? [];
  if (tensorType?.elemType !== onnx.TensorProto.DataType.FLOAT || dims.length !== 2)
    return undefined;
  const inputName = inputInfo?.name ?? "";
  const outputName = graph.output[0]?.name ?? "";
  const initializerDims = new Map(
    (graph.initializer ?? []).map((t) => [
      t.name ?? "",
      (t.dims ?? []).map((d) => int64ToNumber(d)),
    ]),
  );
  const layers: { type: "dense"; units: number; activation: Activation }[] = [];
  const nodes = graph.node ?? [];
  let current = inputName;
  let width = int64ToNumber(dims[1]?.dimValue);
  const inputFeatures = width;
  if (!(inputFeatures > 0)) return undefined;
  for (let n = 0; n < nodes.length; ) {
    const gemm = nodes[n];
    const index = layers.length;
    const kernel = initializerName(index, "kernel");
    const bias = initializerName(index, "bias");
    if (
      gemm?.opType !== "Gemm" ||
      (gemm.domain ?? "") !== "" ||
      gemm.input?.length !== 3 ||
      gemm.input[0] !== current ||
      gemm.input[1] !== kernel ||
      gemm.input[2] !== bias ||
      gemm.output?.length !== 1 ||
      !plainGemm(gemm.attribute ?? [])
    ) {
      return undefined;
    }
    const kernelDims = initializerDims.get(kernel);
    const units = kernelDims?.[1];
    if (kernelDims?.length !== 2 || kernelDims[0] !== width || units === undefined)
      return undefined;
    const biasDims = initializerDims.get(bias);
    if (biasDims?.length !== 1 || biasDims[0] !== units) return undefined;
    current = gemm.output[0] ?? "";
    n++;
    let activation: Activation = "linear";
    const next = nodes[n];
    const op = ACTIVATIONS[next?.opType ?? ""];
    if (next !== undefined && op !== undefined && next.input?.[0] === current) {
      if (next.input.length !== 1 || next.output?.length !== 1 || (next.domain ?? "") !== "")
        return undefined;
      if (
        op === "softmax"
          ? !lastAxisSoftmax(next.attribute ?? [])
          : (next.attribute ?? []).length > 0
      )
        return undefined;
      activation = op;
      current = next.output[0] ?? "";
      n++;
    }
    layers.push({ type: "dense", units, activation });
    width = units;
  }
  if (layers.length === 0 || current !== outputName) return undefined;
  let weights: NetworkWeights;
  try {
    weights = weightsFromOnnx(bytes, layers.length);
  } catch (error) {
    if (error instanceof JobInputError) return undefined;
    throw error;
  }
  return {
    model: {
      format: SEQUENTIAL_FORMAT,
      inputFeatures,
      layers,
      loss: "mse",
      optimizer: { name: "sgd", learningRate: 0.01 },
    },
    inputFeatures,
    weights,
    inputName,
    outputName,
  };
}
