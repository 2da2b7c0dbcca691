#!/usr/bin/env node
// Writes the example dataset: three Gaussian blobs in two dimensions, one per class.
//   data/blobs.csv       300 rows (100 per class, shuffled) to train on
//   data/blobs-test.csv   90 rows (30 per class, shuffled) to evaluate and predict on
// Columns: x0, x1 (features) and label (0, 1 or 2). A fixed seed makes the files the same on
// every machine. Run `node examples/generate-blobs.mjs` to write them, `--check` to verify that
// the committed files are exactly what this script writes.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const SEED = 20_240_601;
const CENTERS = [
  [-2.0, -1.5],
  [2.0, -1.0],
  [0.0, 2.5],
];
const SPREAD = 0.75;

/** mulberry32: a small, fast 32-bit PRNG; uniform in [0, 1). */
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** A standard normal sample (Box-Muller). */
function normal(next) {
  const u = 1 - next();
  const v = next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** `perClass` rows per class, shuffled (Fisher-Yates), as CSV text with a header row. */
function blobs(next, perClass) {
  const rows = [];
  CENTERS.forEach(([cx, cy], label) => {
    for (let i = 0; i < perClass; i++) {
      rows.push([cx + SPREAD * normal(next), cy + SPREAD * normal(next), label]);
    }
  });
  for (let i = rows.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [rows[i], rows[j]] = [rows[j], rows[i]];
  }
  const lines = rows.map(([x0, x1, label]) => `${x0.toFixed(4)},${x1.toFixed(4)},${label}`);
  return `x0,x1,label\n${lines.join("\n")}\n`;
}

const next = random(SEED);
const files = {
  "blobs.csv": blobs(next, 100),
  "blobs-test.csv": blobs(next, 30),
};
const dataDir = join(dirname(fileURLToPath(import.meta.url)), "data");

if (process.argv.includes("--check")) {
  const stale = Object.entries(files).filter(([name, text]) => {
    try {
      return readFileSync(join(dataDir, name), "utf8") !== text;
    } catch {
      return true;
    }
  });
  for (const [name] of stale) {
    process.stderr.write(`examples/data/${name} differs from what generate-blobs.mjs writes\n`);
  }
  process.exitCode = stale.length === 0 ? 0 : 1;
} else {
  for (const [name, text] of Object.entries(files)) {
    writeFileSync(join(dataDir, name), text);
    process.stdout.write(`wrote examples/data/${name} (${text.split("\n").length - 2} rows)\n`);
  }
}
