/**
 * Test data shared by the network end-to-end suites: three Gaussian blobs in two dimensions from a
 * seeded generator (CSV `x0,x1,label`), the small classifier document that trains on them, and
 * the feature rows of such a CSV for running a model directly.
 */

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const CENTERS = [
  [-2, -1.5],
  [2, -1],
  [0, 2.5],
] as const;

/** `perClass` rows per class, shuffled, as CSV with header `x0,x1,label`. */
export function blobsCsv(seed: number, perClass: number): string {
  const next = random(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  const rows: Array<[number, number, number]> = [];
  CENTERS.forEach(([cx, cy], label) => {
    for (let i = 0; i < perClass; i++) {
      rows.push([cx + 0.75 * normal(), cy + 0.75 * normal(), label]);
    }
  });
  for (let i = rows.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [rows[i], rows[j]] = [rows[j] as [number, number, number], rows[i] as [number, number, number]];
  }
  const lines = rows.map(([x0, x1, label]) => `${x0.toFixed(4)},${x1.toFixed(4)},${label}`);
  return `x0,x1,label\n${lines.join("\n")}\n`;
}

/** A 2-16-3 classifier (`tessera.sequential/v1`) that learns the blobs. */
export const MODEL_DOCUMENT = JSON.stringify({
  format: "tessera.sequential/v1",
  layers: [
    { type: "dense", units: 16, activation: "relu" },
    { type: "dense", units: 3, activation: "softmax" },
  ],
  loss: "sparse_categorical_crossentropy",
  optimizer: { name: "adam", learning_rate: 0.01 },
});

/** The `x0,x1` feature rows of a CSV with that header, as float32 in row order. */
export function featuresOf(csv: string): { values: Float32Array; rows: number } {
  const lines = csv.trim().split("\n").slice(1);
  const values = new Float32Array(lines.length * 2);
  lines.forEach((line, i) => {
    const [x0, x1] = line.split(",");
    values[i * 2] = Number(x0);
    values[i * 2 + 1] = Number(x1);
  });
  return { values, rows: lines.length };
}
