/**
 * A seeded pseudo-random generator (xoshiro128**), so shuffles, splits, weight initialisation and
 * dropout masks are reproducible: the same seed gives the same sequence on every machine.
 * Not for cryptography.
 */
import { createHash } from "node:crypto";

/** A stream of pseudo-random numbers. */
export interface Random {
  /** Uniform in [0, 1), 32 bits of resolution. */
  next(): number;
  /** Uniform integer in [0, n). */
  nextInt(n: number): number;
  /** Standard normal (mean 0, standard deviation 1). */
  nextNormal(): number;
  /** Shuffles `items` in place (Fisher-Yates) and returns it. */
  shuffle<T>(items: T[]): T[];
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * A generator seeded by `seed`: a number (an integer or any finite value) or a string, hashed
 * with SHA-256 into the 128-bit state, so nearby seeds give unrelated streams.
 */
export function createRandom(seed: number | string): Random {
  const digest = createHash("sha256")
    .update(`tessera.random/v1:${String(seed)}`)
    .digest();
  const s = new Uint32Array([
    digest.readUInt32LE(0),
    digest.readUInt32LE(4),
    digest.readUInt32LE(8),
    digest.readUInt32LE(12),
  ]);
  if ((s[0] ?? 0) === 0 && (s[1] ?? 0) === 0 && (s[2] ?? 0) === 0 && (s[3] ?? 0) === 0) s[0] = 1;

  function nextUint32(): number {
    const s0 = s[0] ?? 0;
    const s1 = s[1] ?? 0;
    const s2 = s[2] ?? 0;
    const s3 = s[3] ?? 0;
    const result = Math.imul(rotl(Math.imul(s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (s1 << 9) >>> 0;
    const n2 = (s2 ^ s0) >>> 0;
    const n3 = (s3 ^ s1) >>> 0;
    s[1] = (s1 ^ n2) >>> 0;
    s[0] = (s0 ^ n3) >>> 0;
    s[2] = (n2 ^ t) >>> 0;
    s[3] = rotl(n3, 11);
    return result;
  }

  const random: Random = {
    next() {
      return nextUint32() / 4294967296;
    },
    nextInt(n) {
      return Math.floor(random.next() * n);
    },
    nextNormal() {
      // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
      const u = 1 - random.next();
      const v = random.next();
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    },
    shuffle(items) {
      for (let i = items.length - 1; i > 0; i--) {
        const j = random.nextInt(i + 1);
        const a = items[i] as (typeof items)[number];
        items[i] = items[j] as (typeof items)[number];
        items[j] = a;
      }
      return items;
    },
  };
  return random;
}
