/**
 * Raw tensors: the wire format of inference tasks and TensorService calls. A tensor is a name, a
 * dtype name, a concrete shape and its raw bytes laid out as tensor.proto's DataType says
 * (little-endian, row-major, no padding; "string" = per element a little-endian u32 byte length
 * and that many bytes of UTF-8). Several tensors travel as the concatenation of their buffers
 * (media type {@link RAW_TENSORS_MEDIA_TYPE}) described by a list of TensorSpecs.
 *
 * Buffers are never copied when a view is enough: unpacking and proto conversion return
 * subarrays of the bytes they were given. Every malformed input is a {@link TensorError} whose
 * message names the tensor and what is wrong.
 */
import { create } from "@bufbuild/protobuf";
import {
  type ModelDescriptor,
  type TensorSpec,
  TensorSpecSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  DataType,
  type Tensor,
  TensorSchema,
} from "@tessera/proto/tessera/compute/v1/tensor_pb.js";

/** Media type of packed raw tensors. */
export const RAW_TENSORS_MEDIA_TYPE = "application/vnd.tessera.raw-tensors";
/** Media type of JSON input (`{"<input>": nested array}` or a bare nested array). */
export const JSON_MEDIA_TYPE = "application/json";

/** Element type names, as TensorSpec.dtype spells them. */
export type DTypeName =
  | "float32"
  | "float64"
  | "float16"
  | "int32"
  | "int64"
  | "int8"
  | "uint8"
  | "bool"
  | "string";

/** Every {@link DTypeName}. */
export const DTYPE_NAMES: readonly DTypeName[] = [
  "float32",
  "float64",
  "float16",
  "int32",
  "int64",
  "int8",
  "uint8",
  "bool",
  "string",
];

/** One tensor with its raw little-endian bytes. */
export interface RawTensor {
  readonly name: string;
  readonly dtype: DTypeName;
  /** Concrete dimensions, each a non-negative integer; [] for a scalar. */
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/**
 * A tensor is malformed or does not fit the model. `code` is the Connect code a service answers
 * with: "invalid_argument" for bad input, "resource_exhausted" for a size limit.
 */
export class TensorError extends Error {
  override readonly name = "TensorError";
  readonly code: "invalid_argument" | "resource_exhausted";

  constructor(
    message: string,
    code: "invalid_argument" | "resource_exhausted" = "invalid_argument",
  ) {
    super(message);
    this.code = code;
  }
}

const BY_ENUM = new Map<DataType, DTypeName>([
  [DataType.FLOAT32, "float32"],
  [DataType.FLOAT64, "float64"],
  [DataType.FLOAT16, "float16"],
  [DataType.INT32, "int32"],
  [DataType.INT64, "int64"],
  [DataType.INT8, "int8"],
  [DataType.UINT8, "uint8"],
  [DataType.BOOL, "bool"],
  [DataType.UTF8, "string"],
]);
const BY_NAME = new Map<DTypeName, DataType>([...BY_ENUM].map(([d, n]) => [n, d]));

const WIDTHS: Readonly<Record<DTypeName, number>> = {
  float32: 4,
  float64: 8,
  float16: 2,
  int32: 4,
  int64: 8,
  int8: 1,
  uint8: 1,
  bool: 1,
  string: 0,
};

/**
 * The name of a proto DataType.
 * @throws TensorError for DATA_TYPE_UNSPECIFIED or an unknown value.
 */
export function dtypeName(d: DataType): DTypeName {
  const name = BY_ENUM.get(d);
  if (name === undefined) throw new TensorError(`dtype ${DataType[d] ?? d} is not supported`);
  return name;
}

/** The proto DataType of a dtype name. */
export function dataTypeOf(name: DTypeName): DataType {
  const d = BY_NAME.get(name);
  if (d === undefined) throw new TensorError(`dtype "${name}" is not supported`);
  return d;
}

/** Whether `value` is a {@link DTypeName}. */
export function isDTypeName(value: string): value is DTypeName {
  return BY_NAME.has(value as DTypeName);
}

/** Bytes per element of a fixed-width dtype; 0 for "string". */
export function dtypeWidth(dtype: DTypeName): number {
  return WIDTHS[dtype];
}

function label(name: string): string {
  return `tensor "${name}"`;
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

/**
 * Elements of `shape`.
 * @throws TensorError naming `name` when a dimension is not a non-negative integer or the count
 * is not a safe integer.
 */
export function elementCount(name: string, shape: readonly number[]): number {
  let count = 1;
  for (const [i, d] of shape.entries()) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new TensorError(
        `${label(name)}: shape ${shapeText(shape)} dimension ${i} is not a non-negative integer`,
      );
    }
    count *= d;
  }
  if (!Number.isSafeInteger(count)) {
    throw new TensorError(`${label(name)}: shape ${shapeText(shape)} has too many elements`);
  }
  return count;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/**
 * Bytes taken by `count` utf8 elements starting at `offset` of `bytes` (checked: lengths in range,
 * valid UTF-8).
 */
function stringBytes(name: string, bytes: Uint8Array, offset: number, count: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = offset;
  for (let i = 0; i < count; i++) {
    if (at + 4 > bytes.length) {
      throw new TensorError(
        `${label(name)}: string element ${i} has no length (buffer ends at byte ${bytes.length})`,
      );
    }
    const length = view.getUint32(at, true);
    at += 4;
    if (at + length > bytes.length) {
      throw new TensorError(
        `${label(name)}: string element ${i} declares ${length} bytes, the buffer ends ${bytes.length - at} bytes later`,
      );
    }
    try {
      utf8.decode(bytes.subarray(at, at + length));
    } catch {
      throw new TensorError(`${label(name)}: string element ${i} is not valid UTF-8`);
    }
    at += length;
  }
  return at - offset;
}

/**
 * Checks a tensor's name, dtype, shape and buffer: the buffer holds exactly shape × width bytes,
 * bools are 0 or 1, strings are well-formed length-prefixed UTF-8.
 * @throws TensorError naming the tensor, e.g. `tensor "input": buffer has 20 bytes, shape [3,2] float32 needs 24`.
 */
export function checkRawTensor(t: RawTensor): void {
  if (typeof t.name !== "string" || t.name === "") throw new TensorError("a tensor has no name");
  if (!isDTypeName(t.dtype))
    throw new TensorError(`${label(t.name)}: dtype "${t.dtype}" is not supported`);
  const count = elementCount(t.name, t.shape);
  if (t.dtype === "string") {
    const used = stringBytes(t.name, t.data, 0, count);
    if (used !== t.data.length) {
      throw new TensorError(
        `${label(t.name)}: buffer has ${t.data.length} bytes, its ${count} strings use ${used}`,
      );
    }
    return;
  }
  const needed = count * WIDTHS[t.dtype];
  if (t.data.length !== needed) {
    throw new TensorError(
      `${label(t.name)}: buffer has ${t.data.length} bytes, shape ${shapeText(t.shape)} ${t.dtype} needs ${needed}`,
    );
  }
  if (t.dtype === "bool") {
    const bad = t.data.findIndex((b) => b > 1);
    if (bad >= 0)
      throw new TensorError(`${label(t.name)}: bool element ${bad} is ${t.data[bad]}, not 0 or 1`);
  }
}

function specShape(t: RawTensor): bigint[] {
  return t.shape.map((d) => BigInt(d));
}

/** The TensorSpec (concrete shape) of a tensor. */
export function specOf(t: RawTensor): TensorSpec {
  return create(TensorSpecSchema, { name: t.name, dtype: t.dtype, shape: specShape(t) });
}

function checkUniqueNames(ts: readonly { readonly name: string }[]): void {
  const seen = new Set<string>();
  for (const t of ts) {
    if (seen.has(t.name)) throw new TensorError(`${label(t.name)} appears twice`);
    seen.add(t.name);
  }
}

/**
 * Packs tensors into one buffer (their buffers concatenated in order) and their specs.
 * @throws TensorError for a malformed tensor or a repeated name.
 */
export function packRawTensors(ts: readonly RawTensor[]): {
  bytes: Uint8Array;
  specs: TensorSpec[];
} {
  checkUniqueNames(ts);
  let total = 0;
  for (const t of ts) {
    checkRawTensor(t);
    total += t.data.length;
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const t of ts) {
    bytes.set(t.data, at);
    at += t.data.length;
  }
  return { bytes, specs: ts.map(specOf) };
}

/**
 * The concrete shape of a spec as numbers.
 * @throws TensorError when a dimension is negative (dynamic) or too large.
 */
function concreteShape(spec: TensorSpec): number[] {
  return spec.shape.map((d, i) => {
    if (d < 0n || d > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new TensorError(
        `${label(spec.name)}: shape dimension ${i} is ${d}; a concrete non-negative size is needed`,
      );
    }
    return Number(d);
  });
}

function specDType(spec: TensorSpec): DTypeName {
  if (!isDTypeName(spec.dtype))
    throw new TensorError(`${label(spec.name)}: dtype "${spec.dtype}" is not supported`);
  return spec.dtype;
}

/**
 * Splits packed raw tensors by their specs; the tensors' data are views of `bytes` (no copy).
 * @throws TensorError when a spec is malformed, or the sizes do not add up to exactly `bytes`.
 */
export function unpackRawTensors(bytes: Uint8Array, specs: readonly TensorSpec[]): RawTensor[] {
  checkUniqueNames(specs);
  const out: RawTensor[] = [];
  let at = 0;
  for (const spec of specs) {
    if (spec.name === "") throw new TensorError("a tensor spec has no name");
    const dtype = specDType(spec);
    const shape = concreteShape(spec);
    const count = elementCount(spec.name, shape);
    let size: number;
    if (dtype === "string") {
      size = stringBytes(spec.name, bytes, at, count);
    } else {
      size = count * WIDTHS[dtype];
      if (at + size > bytes.length) {
        throw new TensorError(
          `${label(spec.name)}: shape ${shapeText(shape)} ${dtype} needs ${size} bytes from offset ${at}, only ${bytes.length - at} remain of ${bytes.length}`,
        );
      }
    }
    const t: RawTensor = { name: spec.name, dtype, shape, data: bytes.subarray(at, at + size) };
    checkRawTensor(t);
    out.push(t);
    at += size;
  }
  if (at !== bytes.length) {
    throw new TensorError(`raw tensors have ${bytes.length} bytes, their specs describe ${at}`);
  }
  return out;
}

/** Shape of a nested array, read along its first elements (flatten checks it is rectangular). */
function nestedShape(value: unknown): number[] {
  const shape: number[] = [];
  let current = value;
  while (Array.isArray(current)) {
    shape.push(current.length);
    if (current.length === 0) break;
    current = current[0];
  }
  return shape;
}

function flatten(name: string, value: unknown, shape: readonly number[], out: unknown[]): void {
  const walk = (v: unknown, depth: number, path: string) => {
    if (depth === shape.length) {
      if (Array.isArray(v))
        throw new TensorError(
          `${label(name)}: element ${path} is a list where a value is expected (ragged array)`,
        );
      out.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) {
      throw new TensorError(
        `${label(name)}: ${path || "value"} must be a list of ${shape[depth]} (ragged array)`,
      );
    }
    v.forEach((item, i) => {
      walk(item, depth + 1, `${path}[${i}]`);
    });
  };
  walk(value, 0, "");
}

const INT_RANGES: Partial<Record<DTypeName, readonly [number, number]>> = {
  int32: [-2147483648, 2147483647],
  int8: [-128, 127],
  uint8: [0, 255],
};

/** IEEE binary16 bits of a number (round to nearest even). */
export function float16Bits(value: number): number {
  const f32 = new Float32Array([value]);
  const x = new Uint32Array(f32.buffer)[0] ?? 0;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rest > mid || (rest === mid && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa rolls into the exponent, up to infinity: that is the right rounding.
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

/** The number of IEEE binary16 bits. */
export function float16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function encodeValues(name: string, dtype: DTypeName, values: readonly unknown[]): Uint8Array {
  const bad = (i: number, what: string) =>
    new TensorError(`${label(name)}: element ${i} must be ${what}`);
  if (dtype === "string") {
    const parts = values.map((v, i) => {
      if (typeof v !== "string") throw bad(i, "a string");
      return encoder.encode(v);
    });
    const total = parts.reduce((n, p) => n + 4 + p.length, 0);
    const out = new Uint8Array(total);
    const view = new DataView(out.buffer);
    let at = 0;
    for (const p of parts) {
      view.setUint32(at, p.length, true);
      out.set(p, at + 4);
      at += 4 + p.length;
    }
    return out;
  }
  const out = new Uint8Array(values.length * WIDTHS[dtype]);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => {
    switch (dtype) {
      case "float32":
      case "float64":
      case "float16": {
        if (typeof v !== "number") throw bad(i, "a number");
        const n = v as number;
        if (dtype === "float32") view.setFloat32(i * 4, n, true);
        else if (dtype === "float64") view.setFloat64(i * 8, n, true);
        else view.setUint16(i * 2, float16Bits(n), true);
        return;
      }
      case "bool": {
        if (v === true || v === 1) out[i] = 1;
        else if (v === false || v === 0) out[i] = 0;
        else throw bad(i, "true, false, 0 or 1");
        return;
      }
      case "int64": {
        let big: bigint | undefined;
        if (typeof v === "number" && Number.isSafeInteger(v)) big = BigInt(v);
        else if (typeof v === "string" && /^-?\d{1,19}$/.test(v)) big = BigInt(v);
        if (big === undefined || big < -(2n ** 63n) || big >= 2n ** 63n) {
          throw bad(i, "an integer (a decimal string beyond 2^53)");
        }
        view.setBigInt64(i * 8, big, true);
        return;
      }
      default: {
        const [lo, hi] = INT_RANGES[dtype] ?? [0, 0];
        if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
          throw bad(i, `an integer in [${lo}, ${hi}]`);
        }
        if (dtype === "int32") view.setInt32(i * 4, v, true);
        else if (dtype === "int8") view.setInt8(i, v);
        else view.setUint8(i, v);
      }
    }
  });
  return out;
}

/**
 * Tensors from JSON input: `{"<input name>": nested array, …}` with exactly the model's inputs,
 * or a bare nested array when the model has exactly one input. dtypes come from `inputs`; int64
 * elements may be decimal strings; bools are true/false or 0/1. The result is checked against
 * `inputs` ({@link checkInputsAgainst}) and ordered as `inputs`.
 * @throws TensorError naming the input and the element or key that is wrong.
 */
export function tensorsFromJson(json: unknown, inputs: readonly TensorSpec[]): RawTensor[] {
  let byName: Record<string, unknown>;
  const first = inputs[0];
  if (Array.isArray(json) || typeof json !== "object" || json === null) {
    if (inputs.length !== 1 || first === undefined) {
      throw new TensorError(
        `JSON input must be an object with the model's ${inputs.length} inputs (${inputs.map((s) => s.name).join(", ")})`,
      );
    }
    byName = { [first.name]: json };
  } else {
    byName = json as Record<string, unknown>;
    for (const key of Object.keys(byName)) {
      if (!inputs.some((s) => s.name === key)) {
        throw new TensorError(
          `JSON input has key "${key}", which is not an input of the model (${inputs.map((s) => s.name).join(", ")})`,
        );
      }
    }
  }
  const ts = inputs.map((spec): RawTensor => {
    const value = byName[spec.name];
    if (value === undefined)
      throw new TensorError(`${label(spec.name)}: missing from the JSON input`);
    const dtype = specDType(spec);
    const shape = nestedShape(value);
    const values: unknown[] = [];
    flatten(spec.name, value, shape, values);
    return { name: spec.name, dtype, shape, data: encodeValues(spec.name, dtype, values) };
  });
  checkInputsAgainst(ts, inputs);
  return ts;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A typed array over a tensor's data of the dtype's element type. */
export type TypedData =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Int32Array
  | BigInt64Array
  | Int8Array
  | Uint8Array;

type TypedCtor = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedData;
  new (length: number): TypedData;
  readonly BYTES_PER_ELEMENT: number;
};

const CTORS: Readonly<Record<Exclude<DTypeName, "string">, TypedCtor>> = {
  float32: Float32Array as unknown as TypedCtor,
  float64: Float64Array as unknown as TypedCtor,
  float16: Uint16Array as unknown as TypedCtor,
  int32: Int32Array as unknown as TypedCtor,
  int64: BigInt64Array as unknown as TypedCtor,
  int8: Int8Array as unknown as TypedCtor,
  uint8: Uint8Array as unknown as TypedCtor,
  bool: Uint8Array as unknown as TypedCtor,
};

/**
 * The elements of a fixed-width tensor as a typed array (float16 as raw Uint16 bits): a view over
 * `data` when it is aligned, a copy only when it is not.
 * @throws TensorError for a "string" tensor.
 */
export function typedView(t: RawTensor): TypedData {
  if (t.dtype === "string")
    throw new TensorError(`${label(t.name)}: string tensors have no typed view`);
  const Ctor = CTORS[t.dtype];
  const width = Ctor.BYTES_PER_ELEMENT;
  const count = t.data.length / width;
  if (LITTLE_ENDIAN && t.data.byteOffset % width === 0) {
    return new Ctor(t.data.buffer, t.data.byteOffset, count);
  }
  const copy = new Ctor(count);
  new Uint8Array(copy.buffer).set(t.data);
  if (!LITTLE_ENDIAN) reverseElements(new Uint8Array(copy.buffer), width);
  return copy;
}

function reverseElements(bytes: Uint8Array, width: number): void {
  if (width === 1) return;
  for (let at = 0; at < bytes.length; at += width) bytes.subarray(at, at + width).reverse();
}

/** The raw bytes of a typed array, as a view (no copy) on little-endian hosts. */
export function bytesOfTyped(values: TypedData): Uint8Array {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (LITTLE_ENDIAN) return bytes;
  const copy = Uint8Array.from(bytes);
  reverseElements(copy, values.BYTES_PER_ELEMENT);
  return copy;
}

/** The elements of a "string" tensor. */
export function stringElements(t: RawTensor): string[] {
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out: string[] = [];
  let at = 0;
  const count = elementCount(t.name, t.shape);
  for (let i = 0; i < count; i++) {
    const length = view.getUint32(at, true);
    out.push(utf8.decode(t.data.subarray(at + 4, at + 4 + length)));
    at += 4 + length;
  }
  return out;
}

/** A "string" tensor's bytes from its elements. */
export function encodeStrings(values: readonly string[]): Uint8Array {
  return encodeValues("", "string", values);
}

function elementsOf(t: RawTensor): unknown[] {
  if (t.dtype === "string") return stringElements(t);
  const typed = typedView(t);
  switch (t.dtype) {
    case "float16":
      return Array.from(typed as Uint16Array, float16Value);
    case "bool":
      return Array.from(typed as Uint8Array, (b) => b === 1);
    case "int64":
      return Array.from(typed as BigInt64Array, (b) =>
        b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER)
          ? Number(b)
          : b.toString(),
      );
    default:
      return Array.from(typed as ArrayLike<number>);
  }
}

function nest(values: readonly unknown[], shape: readonly number[]): unknown {
  if (shape.length === 0) return values[0];
  let level: unknown[] = [...values];
  for (let d = shape.length - 1; d >= 1; d--) {
    const size = shape[d] ?? 0;
    const next: unknown[] = [];
    const groups = size === 0 ? shape.slice(0, d).reduce((n, x) => n * x, 1) : level.length / size;
    for (let g = 0; g < groups; g++) next.push(level.slice(g * size, (g + 1) * size));
    level = next;
  }
  return level;
}

/**
 * Tensors as JSON: name → nested arrays of numbers (bools as true/false, strings as strings,
 * int64 beyond ±2^53 as decimal strings, float16 as numbers).
 * @throws TensorError for a malformed tensor.
 */
export function tensorsToJson(ts: readonly RawTensor[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const t of ts) {
    checkRawTensor(t);
    out[t.name] = nest(elementsOf(t), t.shape);
  }
  return out;
}

/**
 * RawTensors of tessera.compute.v1.Tensor messages (data are the messages' buffers, not copies).
 * @throws TensorError for an unspecified dtype, a negative dimension or a malformed buffer.
 */
export function tensorsFromProto(ts: readonly Tensor[]): RawTensor[] {
  checkUniqueNames(ts);
  return ts.map((p) => {
    if (p.name === "") throw new TensorError("a tensor has no name");
    let dtype: DTypeName;
    try {
      dtype = dtypeName(p.dtype);
    } catch (error) {
      throw new TensorError(`${label(p.name)}: ${(error as Error).message}`);
    }
    const shape = p.shape.map((d, i) => {
      if (d < 0n || d > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new TensorError(`${label(p.name)}: shape dimension ${i} is ${d}`);
      }
      return Number(d);
    });
    const t: RawTensor = { name: p.name, dtype, shape, data: p.buffer };
    checkRawTensor(t);
    return t;
  });
}

/** tessera.compute.v1.Tensor messages of RawTensors (buffers shared, not copied). */
export function tensorsToProto(ts: readonly RawTensor[]): Tensor[] {
  return ts.map((t) =>
    create(TensorSchema, {
      name: t.name,
      buffer: t.data,
      shape: specShape(t),
      dtype: dataTypeOf(t.dtype),
    }),
  );
}

/**
 * Checks tensors against a model's declared inputs: exactly the declared names (each once), the
 * declared dtypes and ranks, and every fixed (non-negative) dimension.
 * @throws TensorError naming the input and the mismatch.
 */
export function checkInputsAgainst(ts: readonly RawTensor[], inputs: readonly TensorSpec[]): void {
  checkUniqueNames(ts);
  for (const t of ts) {
    if (!inputs.some((s) => s.name === t.name)) {
      throw new TensorError(
        `${label(t.name)} is not an input of the model (${inputs.map((s) => s.name).join(", ")})`,
      );
    }
  }
  for (const spec of inputs) {
    const t = ts.find((x) => x.name === spec.name);
    if (t === undefined) throw new TensorError(`${label(spec.name)}: input is missing`);
    checkRawTensor(t);
    if (t.dtype !== spec.dtype) {
      throw new TensorError(`${label(t.name)}: dtype ${t.dtype}, the model takes ${spec.dtype}`);
    }
    if (spec.shape.length === 0 && t.shape.length === 0) continue;
    const declared = `[${spec.shape.join(",")}]`;
    if (t.shape.length !== spec.shape.length) {
      throw new TensorError(
        `${label(t.name)}: shape ${shapeText(t.shape)} has rank ${t.shape.length}, the model takes ${declared}`,
      );
    }
    spec.shape.forEach((d, i) => {
      if (d >= 0n && BigInt(t.shape[i] ?? -1) !== d) {
        throw new TensorError(
          `${label(t.name)}: shape ${shapeText(t.shape)} dimension ${i} must be ${d} (model takes ${declared})`,
        );
      }
    });
  }
}

function baseMediaType(mediaType: string): string {
  return (mediaType.split(";")[0] ?? "").trim().toLowerCase();
}

/**
 * The input tensors of an inference task: raw tensors described by `specs`, or JSON (see
 * {@link tensorsFromJson}; `specs` ignored). Either way they are checked against the model's
 * declared inputs and ordered as the model declares them.
 * @throws TensorError (invalid_argument) for another media type or malformed input.
 */
export function decodeTaskInput(
  input: Uint8Array,
  mediaType: string,
  specs: readonly TensorSpec[],
  model: ModelDescriptor,
): RawTensor[] {
  const kind = baseMediaType(mediaType);
  if (kind === RAW_TENSORS_MEDIA_TYPE) {
    const ts = unpackRawTensors(input, specs);
    checkInputsAgainst(ts, model.inputs);
    return model.inputs.map((s) => ts.find((t) => t.name === s.name) as RawTensor);
  }
  if (kind === JSON_MEDIA_TYPE) {
    let json: unknown;
    try {
      json = JSON.parse(utf8.decode(input));
    } catch {
      throw new TensorError("JSON input is not valid UTF-8 JSON");
    }
    return tensorsFromJson(json, model.inputs);
  }
  throw new TensorError(
    `input media type "${mediaType}" is not supported (${RAW_TENSORS_MEDIA_TYPE} or ${JSON_MEDIA_TYPE})`,
  );
}

/**
 * Rows (dim 0) of a tensor.
 * @throws TensorError for a scalar.
 */
export function rowsOf(t: RawTensor): number {
  const rows = t.shape[0];
  if (rows === undefined)
    throw new TensorError(`${label(t.name)}: a scalar has no batch dimension`);
  return rows;
}

/** Bytes per row (dim 0) of a fixed-width tensor. */
function rowBytes(t: RawTensor): number {
  return elementCount(t.name, t.shape.slice(1)) * WIDTHS[t.dtype];
}

/**
 * Concatenates same-named tensors along dim 0 (one copy). With one part it returns that part.
 * @throws TensorError when dtypes or trailing dims differ.
 */
export function concatRows(parts: readonly RawTensor[]): RawTensor {
  const first = parts[0];
  if (first === undefined) throw new TensorError("nothing to concatenate");
  if (parts.length === 1) return first;
  const tail = shapeText(first.shape.slice(1));
  let rows = 0;
  let bytes = 0;
  for (const p of parts) {
    if (p.dtype !== first.dtype || shapeText(p.shape.slice(1)) !== tail || p.shape.length === 0) {
      throw new TensorError(
        `${label(first.name)}: cannot batch ${p.dtype} ${shapeText(p.shape)} with ${first.dtype} ${shapeText(first.shape)}`,
      );
    }
    rows += rowsOf(p);
    bytes += p.data.length;
  }
  const data = new Uint8Array(bytes);
  let at = 0;
  for (const p of parts) {
    data.set(p.data, at);
    at += p.data.length;
  }
  return { name: first.name, dtype: first.dtype, shape: [rows, ...first.shape.slice(1)], data };
}

/**
 * Splits a tensor along dim 0 into pieces of `rows[i]` rows (views, no copy).
 * @throws TensorError when the rows do not add up to the tensor's dim 0.
 */
export function splitRows(t: RawTensor, rows: readonly number[]): RawTensor[] {
  const total = rows.reduce((n, r) => n + r, 0);
  if (t.shape.length === 0 || t.shape[0] !== total) {
    throw new TensorError(
      `${label(t.name)}: output shape ${shapeText(t.shape)} does not have the batch's ${total} rows in dim 0`,
    );
  }
  if (rows.length === 1) return [t];
  const out: RawTensor[] = [];
  if (t.dtype === "string") {
    const values = stringElements(t);
    const per = values.length / Math.max(1, total);
    let at = 0;
    for (const r of rows) {
      const piece = values.slice(at * per, (at + r) * per);
      out.push({
        name: t.name,
        dtype: t.dtype,
        shape: [r, ...t.shape.slice(1)],
        data: encodeStrings(piece),
      });
      at += r;
    }
    return out;
  }
  const stride = rowBytes(t);
  let at = 0;
  for (const r of rows) {
    out.push({
      name: t.name,
      dtype: t.dtype,
      shape: [r, ...t.shape.slice(1)],
      data: t.data.subarray(at * stride, (at + r) * stride),
    });
    at += r;
  }
  return out;
}
