import assert from "node:assert/strict";
import { test } from "node:test";
import { JobInputError } from "./errors.js";
import {
  parseSequentialModel,
  serializeSequentialModel,
  validateSequentialModel,
} from "./sequential-model.js";

const VALID = {
  format: "tessera.sequential/v1",
  layers: [
    { type: "dense", units: 16, activation: "relu" },
    { type: "dropout", rate: 0.2 },
    { type: "dense", units: 3, activation: "softmax" },
  ],
  loss: "sparse_categorical_crossentropy",
  optimizer: { name: "adam", learning_rate: 0.01 },
};

function refused(document: unknown, pattern: RegExp): void {
  assert.throws(
    () => validateSequentialModel(document),
    (error: unknown) => error instanceof JobInputError && pattern.test(error.message),
    String(pattern),
  );
}

test("a valid document parses, with defaults filled in, and round-trips", () => {
  const model = parseSequentialModel(JSON.stringify(VALID));
  assert.equal(model.layers.length, 3);
  assert.deepEqual(model.optimizer, { name: "adam", learningRate: 0.01 });
  assert.deepEqual(parseSequentialModel(serializeSequentialModel(model)), model);
  const defaults = validateSequentialModel({
    ...VALID,
    optimizer: undefined,
    layers: [{ type: "dense", units: 1 }],
    loss: "mse",
  });
  assert.deepEqual(defaults.optimizer, { name: "adam", learningRate: 0.001 });
  assert.equal(defaults.layers[0]?.type === "dense" && defaults.layers[0].activation, "linear");
});

test("invalid documents are refused with the field named", () => {
  assert.throws(() => parseSequentialModel("{"), /model document is not valid JSON/);
  refused([], /model document must be a JSON object/);
  refused({ ...VALID, format: "keras" }, /model.format must be "tessera.sequential\/v1"/);
  refused({ ...VALID, extra: 1 }, /model.extra is not a known setting/);
  refused({ ...VALID, layers: [] }, /model.layers must be a non-empty list/);
  refused(
    { ...VALID, layers: [{ type: "conv2d" }] },
    /model.layers\[0\].type must be one of dense, dropout/,
  );
  refused(
    { ...VALID, layers: [{ type: "dense", units: 0 }] },
    /model.layers\[0\].units must be an integer from 1 to 65536/,
  );
  refused(
    { ...VALID, layers: [{ type: "dense", units: 3, activation: "gelu" }] },
    /model.layers\[0\].activation must be one of relu, sigmoid, tanh, softmax, linear/,
  );
  refused(
    { ...VALID, layers: [{ type: "dense", units: 3, activation: "softmax", bias: false }] },
    /model.layers\[0\].bias is not a known setting/,
  );
  refused(
    {
      ...VALID,
      layers: [
        { type: "dense", units: 3, activation: "softmax" },
        { type: "dropout", rate: 1 },
      ],
    },
    /model.layers\[1\].rate must be a number in \[0, 1\)/,
  );
  refused(
    {
      ...VALID,
      layers: [
        { type: "dense", units: 3, activation: "softmax" },
        { type: "dropout", rate: 0.5 },
      ],
    },
    /model.layers\[1\] must be a dense layer/,
  );
  refused({ ...VALID, loss: "hinge" }, /model.loss must be one of/);
  refused(
    { ...VALID, layers: [{ type: "dense", units: 3, activation: "relu" }] },
    /model.layers\[0\] must be softmax with at least 2 units/,
  );
  refused(
    { ...VALID, loss: "binary_crossentropy" },
    /model.layers\[2\].activation must be sigmoid for loss binary_crossentropy/,
  );
  refused(
    { ...VALID, optimizer: { name: "adagrad" } },
    /model.optimizer.name must be one of adam, sgd, rmsprop/,
  );
  refused(
    { ...VALID, optimizer: { name: "sgd", learning_rate: -1 } },
    /model.optimizer.learning_rate must be a number > 0/,
  );
  refused(
    { ...VALID, optimizer: { name: "sgd", momentum: 0.9 } },
    /model.optimizer.momentum is not a known setting/,
  );
  refused({ ...VALID, input_features: 2.5 }, /model.input_features must be an integer/);
});
