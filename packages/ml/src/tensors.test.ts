import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import {
  ModelDescriptorSchema,
  TensorSpecSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { DataType } from "@tessera/proto/tessera/compute/v1/tensor_pb.js";
import { fromOrtTensor, toOrtTensor } from "./ort-tensors.js";
import {
  checkInputsAgainst,
  checkRawTensor,
  concatRows,
  dataTypeOf,
  decodeTaskInput,
  dtypeName,
  float16Bits,
  float16Value,
  packRawTensors,
  RAW_TENSORS_MEDIA_TYPE,
  type RawTensor,
  splitRows,
  TensorError,
  tensorsFromJson,
  tensorsFromProto,
  tensorsToJson,
  tensorsToProto,
  typedView,
  unpackRawTensors,
} from "./tensors.js";

function f32(name: string, shape: number[], values: number[]): RawTensor {
  return { name, dtype: "float32", shape, data: new Uint8Array(Float32Array.from(values).buffer) };
}

const spec = (name: string, shape: number[], dtype: string) =>
  create(TensorSpecSchema, { name, dtype, shape: shape.map(BigInt) });

const model = create(ModelDescriptorSchema, {
  modelId: "m",
  inputs: [spec("input", [-1, 2], "float32")],
  outputs: [spec("output", [-1, 3], "float32")],
});

function throwsTensorError(fn: () => unknown, message: RegExp | string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof TensorError, `expected TensorError, got ${String(error)}`);
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    assert.equal(error.code, "invalid_argument");
    return true;
  });
}

test("dtype names map to the proto enum both ways; unspecified is refused", () => {
  for (const name of [
    "float32",
    "float64",
    "float16",
    "int32",
    "int64",
    "int8",
    "uint8",
    "bool",
    "string",
  ] as const) {
    assert.equal(dtypeName(dataTypeOf(name)), name);
  }
  assert.equal(dataTypeOf("string"), DataType.UTF8);
  throwsTensorError(() => dtypeName(DataType.UNSPECIFIED), /UNSPECIFIED is not supported/);
});

test("a buffer that does not fit the shape names the tensor and both sizes", () => {
  throwsTensorError(
    () =>
      checkRawTensor({ name: "input", dtype: "float32", shape: [3, 2], data: new Uint8Array(20) }),
    'tensor "input": buffer has 20 bytes, shape [3,2] float32 needs 24',
  );
  throwsTensorError(
    () => checkRawTensor({ name: "mask", dtype: "bool", shape: [2], data: Uint8Array.of(1, 2) }),
    'tensor "mask": bool element 1 is 2, not 0 or 1',
  );
  throwsTensorError(
    () => checkRawTensor({ name: "x", dtype: "float32", shape: [-1, 2], data: new Uint8Array(0) }),
    /tensor "x": shape \[-1,2\] dimension 0/,
  );
  // A string tensor whose element claims more bytes than there are.
  throwsTensorError(
    () =>
      checkRawTensor({
        name: "text",
        dtype: "string",
        shape: [1],
        data: Uint8Array.of(9, 0, 0, 0, 65),
      }),
    /tensor "text": string element 0 declares 9 bytes/,
  );
  checkRawTensor({ name: "scalar", dtype: "int64", shape: [], data: new Uint8Array(8) });
});

test("pack and unpack round-trip mixed tensors, and unpacked data are views of the bytes", () => {
  const strings = tensorsFromJson(
    {
      text: [
        ["héllo", ""],
        ["a", "bc"],
      ],
    },
    [spec("text", [-1, 2], "string")],
  );
  const ts: RawTensor[] = [
    f32("a", [2, 2], [1, 2, 3, 4]),
    {
      name: "b",
      dtype: "int64",
      shape: [3],
      data: new Uint8Array(BigInt64Array.of(1n, -2n, 2n ** 60n).buffer),
    },
    ...strings,
    { name: "c", dtype: "bool", shape: [2], data: Uint8Array.of(1, 0) },
  ];
  const { bytes, specs } = packRawTensors(ts);
  assert.deepEqual(
    specs.map((s) => [s.name, s.dtype, s.shape]),
    [
      ["a", "float32", [2n, 2n]],
      ["b", "int64", [3n]],
      ["text", "string", [2n, 2n]],
      ["c", "bool", [2n]],
    ],
  );
  const back = unpackRawTensors(bytes, specs);
  assert.deepEqual(tensorsToJson(back), {
    a: [
      [1, 2],
      [3, 4],
    ],
    b: [1, -2, "1152921504606846976"],
    text: [
      ["héllo", ""],
      ["a", "bc"],
    ],
    c: [true, false],
  });
  assert.equal(back[0]?.data.buffer, bytes.buffer);
  throwsTensorError(
    () => unpackRawTensors(Uint8Array.from([...bytes, 0]), specs),
    `raw tensors have ${bytes.length + 1} bytes, their specs describe ${bytes.length}`,
  );
  throwsTensorError(
    () => unpackRawTensors(bytes.subarray(0, 10), specs),
    /tensor "a": shape \[2,2\] float32 needs 16 bytes/,
  );
  throwsTensorError(
    () => unpackRawTensors(bytes, [spec("a", [-1, 2], "float32")]),
    /tensor "a": shape dimension 0 is -1/,
  );
  throwsTensorError(
    () => unpackRawTensors(new Uint8Array(4), [spec("a", [1], "complex")]),
    'tensor "a": dtype "complex" is not supported',
  );
});

test("a 4 MiB aligned float32 tensor is viewed, not copied; an unaligned one is copied once", () => {
  const big = new Uint8Array(4 * 1024 * 1024 + 4);
  const t: RawTensor = {
    name: "big",
    dtype: "float32",
    shape: [1024, 1024],
    data: big.subarray(4),
  };
  const view = typedView(t);
  assert.equal(view.buffer, big.buffer);
  const unaligned: RawTensor = { ...t, data: big.subarray(1, 1 + 4 * 1024 * 1024) };
  assert.notEqual(typedView(unaligned).buffer, big.buffer);
  const ortTensor = toOrtTensor(t);
  assert.equal((ortTensor.data as Float32Array).buffer, big.buffer);
  const back = fromOrtTensor("big", ortTensor);
  assert.equal(back.data.buffer, big.buffer);
  assert.deepEqual(back.shape, [1024, 1024]);
});

test("JSON input: keyed object or bare array, checked against the model's inputs", () => {
  const [input] = tensorsFromJson(
    [
      [1, 2],
      [3.5, -4],
    ],
    model.inputs,
  );
  assert.deepEqual(input?.shape, [2, 2]);
  assert.deepEqual(Array.from(typedView(input as RawTensor) as Float32Array), [1, 2, 3.5, -4]);
  assert.deepEqual(tensorsFromJson({ input: [[1, 2]] }, model.inputs)[0]?.shape, [1, 2]);
  throwsTensorError(
    () => tensorsFromJson({ input: [[1, 2]], extra: 1 }, model.inputs),
    /key "extra", which is not an input/,
  );
  throwsTensorError(
    () => tensorsFromJson({}, model.inputs),
    'tensor "input": missing from the JSON input',
  );
  throwsTensorError(
    () => tensorsFromJson([[1, 2], [3]], model.inputs),
    /tensor "input": \[1\] must be a list of 2 \(ragged array\)/,
  );
  throwsTensorError(
    () => tensorsFromJson([[1, "x"]], model.inputs),
    'tensor "input": element 1 must be a number',
  );
  throwsTensorError(
    () => tensorsFromJson([[1, 2, 3]], model.inputs),
    /tensor "input": shape \[1,3\] dimension 1 must be 2/,
  );
  throwsTensorError(
    () => tensorsFromJson([1, 2], model.inputs),
    /tensor "input": shape \[2\] has rank 1/,
  );
  throwsTensorError(
    () => tensorsFromJson([[300]], [spec("p", [-1, 1], "uint8")]),
    'tensor "p": element 0 must be an integer in [0, 255]',
  );
});

test("decodeTaskInput takes raw tensors or JSON and refuses other media types", () => {
  const { bytes, specs } = packRawTensors([f32("input", [1, 2], [5, 6])]);
  assert.deepEqual(tensorsToJson(decodeTaskInput(bytes, RAW_TENSORS_MEDIA_TYPE, specs, model)), {
    input: [[5, 6]],
  });
  const json = new TextEncoder().encode(JSON.stringify({ input: [[5, 6]] }));
  assert.deepEqual(
    tensorsToJson(decodeTaskInput(json, "application/json; charset=utf-8", [], model)),
    { input: [[5, 6]] },
  );
  throwsTensorError(
    () => decodeTaskInput(json, "text/csv", [], model),
    /input media type "text\/csv" is not supported/,
  );
  throwsTensorError(
    () => decodeTaskInput(new TextEncoder().encode("{"), "application/json", [], model),
    "JSON input is not valid UTF-8 JSON",
  );
  const wrong = packRawTensors([
    { name: "input", dtype: "float64", shape: [1, 2], data: new Uint8Array(16) },
  ]);
  throwsTensorError(
    () => decodeTaskInput(wrong.bytes, RAW_TENSORS_MEDIA_TYPE, wrong.specs, model),
    'tensor "input": dtype float64, the model takes float32',
  );
  const other = packRawTensors([f32("pixels", [1, 2], [0, 0])]);
  throwsTensorError(
    () => checkInputsAgainst(unpackRawTensors(other.bytes, other.specs), model.inputs),
    /tensor "pixels" is not an input of the model/,
  );
});

test("proto tensors round-trip and keep their buffers", () => {
  const t = f32("input", [1, 2], [1, 2]);
  const protos = tensorsToProto([t]);
  assert.equal(protos[0]?.dtype, DataType.FLOAT32);
  assert.deepEqual(protos[0]?.shape, [1n, 2n]);
  const back = tensorsFromProto(protos);
  assert.equal(back[0]?.data, t.data);
  const bad = tensorsToProto([t]);
  if (bad[0]) bad[0].dtype = DataType.UNSPECIFIED;
  throwsTensorError(
    () => tensorsFromProto(bad),
    /tensor "input": dtype UNSPECIFIED is not supported/,
  );
});

test("rows concatenate and split back to each part", () => {
  const a = f32("x", [1, 2], [1, 2]);
  const b = f32("x", [2, 2], [3, 4, 5, 6]);
  const joined = concatRows([a, b]);
  assert.deepEqual(joined.shape, [3, 2]);
  const [pa, pb] = splitRows(joined, [1, 2]);
  assert.deepEqual(tensorsToJson([pa as RawTensor]), { x: [[1, 2]] });
  assert.deepEqual(tensorsToJson([pb as RawTensor]), {
    x: [
      [3, 4],
      [5, 6],
    ],
  });
  throwsTensorError(() => splitRows(joined, [1, 1]), /does not have the batch's 2 rows/);
});

test("float16 encodes and decodes exactly representable values", () => {
  for (const v of [0, 1, -2, 0.5, 65504, 2 ** -24, 1.5])
    assert.equal(float16Value(float16Bits(v)), v);
  assert.equal(float16Value(float16Bits(1e6)), Number.POSITIVE_INFINITY);
  const [h] = tensorsFromJson([[1.5, -3]], [spec("h", [-1, 2], "float16")]);
  assert.deepEqual(tensorsToJson([h as RawTensor]), { h: [[1.5, -3]] });
});
