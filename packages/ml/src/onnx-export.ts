/**
 * Exports a trained sequential model to ONNX (IR version 7, default-domain opset 13), so the
 * inference and evaluation executors (onnxruntime) and any other ONNX runtime can run it.
 *
 * Graph: input "input" float32 [batch, features] → per dense layer i a Gemm node
 * (A · B + C with initializers "dense_<i>.kernel" [inputs, units] and "dense_<i>.bias" [units])
 * followed by Relu, Sigmoid, Tanh or Softmax(axis=-1) (nothing for linear) → output "output"
 * float32 [batch, units of the last layer]. Dropout is the identity at inference and is left out.
 * Metadata properties record the document format, the loss and the feature names, which the
 * evaluation executor reads to choose its metrics.
 */
import { JobInputError } from "./errors.js";
import { type INodeProto, type ITensorProto, type IValueInfoProto, onnx } from "./onnx-proto.js";
import { denseLayers, SEQUENTIAL_FORMAT, type SequentialModel } from "./sequential-model.js";
import { checkWeightsFit, initializerName, type NetworkWeights } from "./weights.js";

/** Name of the exported graph's input. */
export const ONNX_INPUT_NAME = "input";
/** Name of the exported graph's output. */
export const ONNX_OUTPUT_NAME = "output";
/** The default-domain opset the export uses. */
export const ONNX_OPSET = 13;
/** Metadata key holding the model's loss. */
export const METADATA_LOSS = "tessera.loss";
/** Metadata key holding the feature names (a JSON list). */
export const METADATA_FEATURES = "tessera.features";

const IR_VERSION = 7;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

/** Options of {@link exportOnnx}. */
export interface OnnxExportOptions {
  /** Names of the input's columns, recorded in the metadata. */
  readonly featureNames?: readonly string[] | undefined;
  /** Graph name; default "tessera_sequential". */
  readonly graphName?: string | undefined;
}

function floatTensor(name: string, dims: number[], values: Float32Array): ITensorProto {
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  // ONNX raw_data is little-endian whatever the host's byte order.
  values.forEach((value, index) => {
    view.setFloat32(index * 4, value, true);
  });
  return { name, dims, dataType: FLOAT, rawData: raw };
}

function valueInfo(name: string, width: number): IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: { dim: [{ dimParam: "batch" }, { dimValue: width }] },
      },
    },
  };
}

const ACTIVATION_OPS = {
  relu: "Relu",
  sigmoid: "Sigmoid",
  tanh: "Tanh",
  softmax: "Softmax",
} as const;

/**
 * The serialized onnx.ModelProto of `model` with `weights` for `inputFeatures` inputs.
 * @throws JobInputError when the weights do not fit the model.
 */
export function exportOnnx(
  model: SequentialModel,
  inputFeatures: number,
  weights: NetworkWeights,
  options: OnnxExportOptions = {},
): Uint8Array {
  checkWeightsFit(model, inputFeatures, weights);
  if (options.featureNames !== undefined && options.featureNames.length !== inputFeatures) {
    throw new JobInputError(
      `${options.featureNames.length} feature names given for ${inputFeatures} inputs`,
    );
  }
  const dense = denseLayers(model);
  const nodes: INodeProto[] = [];
  const initializers: ITensorProto[] = [];
  let current = ONNX_INPUT_NAME;
  dense.forEach((layer, index) => {
    const w = weights[index];
    if (w === undefined) throw new JobInputError(`weights for dense layer ${index} are missing`);
    const last = index === dense.length - 1;
    const kernel = initializerName(index, "kernel");
    const bias = initializerName(index, "bias");
    initializers.push(floatTensor(kernel, [w.inputs, w.units], w.kernel));
    initializers.push(floatTensor(bias, [w.units], w.bias));
    const linear = layer.activation === "linear";
    const gemmOut = last && linear ? ONNX_OUTPUT_NAME : `dense_${index}/linear`;
    nodes.push({
      name: `dense_${index}/gemm`,
      opType: "Gemm",
      input: [current, kernel, bias],
      output: [gemmOut],
    });
    current = gemmOut;
    if (!linear) {
      const activated = last ? ONNX_OUTPUT_NAME : `dense_${index}/${layer.activation}`;
      const node: INodeProto = {
        name: `dense_${index}/${layer.activation}`,
        opType: ACTIVATION_OPS[layer.activation],
        input: [current],
        output: [activated],
      };
      if (layer.activation === "softmax") {
        node.attribute = [{ name: "axis", type: onnx.AttributeProto.AttributeType.INT, i: -1 }];
      }
      nodes.push(node);
      current = activated;
    }
  });
  const outputUnits = dense[dense.length - 1]?.units ?? 0;
  const metadata = [
    { key: "tessera.format", value: SEQUENTIAL_FORMAT },
    { key: METADATA_LOSS, value: model.loss },
  ];
  if (options.featureNames !== undefined) {
    metadata.push({ key: METADATA_FEATURES, value: JSON.stringify(options.featureNames) });
  }
  const proto = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: "", version: ONNX_OPSET }],
    producerName: "tessera-ml",
    producerVersion: "1",
    metadataProps: metadata,
    graph: {
      name: options.graphName ?? "tessera_sequential",
      node: nodes,
      initializer: initializers,
      input: [valueInfo(ONNX_INPUT_NAME, inputFeatures)],
      output: [valueInfo(ONNX_OUTPUT_NAME, outputUnits)],
    },
  });
  return onnx.ModelProto.encode(proto).finish();
}

/**
 * The metadata properties of a serialized ONNX model (key → value); empty when there are none.
 * @throws JobInputError when the bytes are not an ONNX model.
 */
export function onnxMetadata(bytes: Uint8Array): Map<string, string> {
  try {
    const model = onnx.ModelProto.decode(bytes);
    return new Map(
      (model.metadataProps ?? []).map((entry) => [entry.key ?? "", entry.value ?? ""]),
    );
  } catch {
    throw new JobInputError("model is not a valid ONNX model");
  }
}
