/**
 * Conversions between {@link RawTensor}s and onnxruntime-node tensors. Fixed-width data are
 * shared, not copied, whenever the bytes are aligned for their element type (onnxruntime reads
 * the typed array in place); unaligned data are copied once.
 */
import * as ort from "onnxruntime-node";
import {
  bytesOfTyped,
  type DTypeName,
  encodeStrings,
  isDTypeName,
  type RawTensor,
  stringElements,
  TensorError,
  type TypedData,
  typedView,
} from "./tensors.js";

/** An onnxruntime tensor of `t` (float16 as Uint16 bits, bool as Uint8). */
export function toOrtTensor(t: RawTensor): ort.Tensor {
  const dims = [...t.shape];
  if (t.dtype === "string") return new ort.Tensor("string", stringElements(t), dims);
  const data = typedView(t);
  // onnxruntime's bool tensors are Uint8Array like ours; its float16 are Uint16Array bits.
  return new ort.Tensor(t.dtype, data as never, dims);
}

/** The RawTensor named `name` of an onnxruntime tensor (its data shared when possible). */
export function fromOrtTensor(name: string, tensor: ort.Tensor): RawTensor {
  const type = tensor.type;
  if (!isDTypeName(type)) {
    throw new TensorError(`tensor "${name}": onnxruntime type ${type} is not a supported dtype`);
  }
  const dtype: DTypeName = type;
  const shape = [...tensor.dims];
  if (dtype === "string") {
    return { name, dtype, shape, data: encodeStrings(tensor.data as string[]) };
  }
  return { name, dtype, shape, data: bytesOfTyped(tensor.data as TypedData) };
}
