import assert from "node:assert/strict";
import { test } from "node:test";
import { createLinePrefixer, stripAnsi } from "./log-prefix.js";

test("prefixes lines with the service name padded to a common width", () => {
  const wallet = createLinePrefixer({ name: "wallet", width: 12 });
  const computeNode = createLinePrefixer({ name: "compute-node", width: 12 });
  assert.equal(wallet("listening"), "wallet       | listening");
  assert.equal(computeNode("listening"), "compute-node | listening");
});

test("coloured prefixes keep the line readable once colours are stripped", () => {
  const prefix = createLinePrefixer({ name: "gateway", width: 8, index: 1, colour: true });
  const line = prefix("\u001b[32mINFO\u001b[39m: up");
  assert.notEqual(line, stripAnsi(line));
  assert.equal(stripAnsi(line), "gateway  | INFO: up");
});
