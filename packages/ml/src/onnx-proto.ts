/**
 * The ONNX protobuf types (onnx-proto, protobufjs-generated, CommonJS) loaded for ES modules.
 */

import type { onnx as OnnxTypes } from "onnx-proto";
import onnxProto from "onnx-proto";

/** The `onnx` namespace of onnx-proto: ModelProto, GraphProto, TensorProto, ... */
export const onnx = onnxProto.onnx;

/** A decoded onnx.ModelProto. */
export type ModelProto = OnnxTypes.ModelProto;
/** Properties of an onnx.ModelProto, for encoding. */
export type IModelProto = OnnxTypes.IModelProto;
/** Properties of an onnx.TensorProto. */
export type ITensorProto = OnnxTypes.ITensorProto;
/** Properties of an onnx.NodeProto. */
export type INodeProto = OnnxTypes.INodeProto;
/** Properties of an onnx.ValueInfoProto. */
export type IValueInfoProto = OnnxTypes.IValueInfoProto;

/** protobufjs decodes int64 fields as numbers or Long objects; this reads either. */
export function int64ToNumber(value: number | { toNumber(): number } | null | undefined): number {
  if (value === null || value === undefined) return 0;
  return typeof value === "number" ? value : value.toNumber();
}
