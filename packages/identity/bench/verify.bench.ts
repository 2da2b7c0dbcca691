/**
 * Identity throughput on this machine: ed25519 sign and verify ops/s, SHA3-256 MB/s over 1 KiB
 * bodies, request signing end to end, and NodeRecord proof-of-work attempts/s.
 * Run: `node --import tsx bench/verify.bench.ts` (or `pnpm --filter @tessera/identity bench`).
 * Figures, not assertions: compare runs on the same machine only.
 */
import { randomBytes } from "node:crypto";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha3_256 as nobleSha3_256 } from "@noble/hashes/sha3.js";
import { sha3_256 } from "../src/hash.js";
import { generateKeyPair, verify } from "../src/keys.js";
import { solveNodeRecordPow } from "../src/node-record.js";
import { signRequest, verifyRequestSignature } from "../src/request-signing.js";
import { sampleNodeRecord } from "../src/test-node-record.js";

const MIN_MS = 1500;

function measure(label: string, unit: string, perOp: number, op: () => void): void {
  for (let i = 0; i < 50; i++) op();
  let ops = 0;
  const start = process.hrtime.bigint();
  let elapsedMs = 0;
  while (elapsedMs < MIN_MS) {
    for (let i = 0; i < 50; i++) op();
    ops += 50;
    elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
  }
  const perSecond = (ops / elapsedMs) * 1000;
  const figure = unit === "MB/s" ? (perSecond * perOp) / 1e6 : perSecond;
  const digits = figure < 100 ? 1 : 0;
  console.log(`${label.padEnd(44)} ${figure.toFixed(digits).padStart(10)} ${unit}`);
}

const keyPair = generateKeyPair();
const body = randomBytes(1024);
const signature = keyPair.sign(body);

console.log(`node ${process.version}, ${process.arch}; each figure over >= ${MIN_MS} ms`);
measure("ed25519 sign, 1 KiB (identity: node:crypto)", "ops/s", 1, () => keyPair.sign(body));
measure("ed25519 verify, 1 KiB (identity: node:crypto)", "ops/s", 1, () => {
  if (!verify(keyPair.publicKey, body, signature)) throw new Error("verify failed");
});
// Reference: the pure-JS @noble libraries, the alternative weighed in keys.ts and hash.ts.
const nobleSecret = ed25519.utils.randomSecretKey();
const noblePublic = ed25519.getPublicKey(nobleSecret);
const nobleSignature = ed25519.sign(body, nobleSecret);
measure("ed25519 sign, 1 KiB (@noble/curves, reference)", "ops/s", 1, () =>
  ed25519.sign(body, nobleSecret),
);
measure("ed25519 verify, 1 KiB (@noble/curves, reference)", "ops/s", 1, () => {
  if (!ed25519.verify(nobleSignature, body, noblePublic)) throw new Error("verify failed");
});
measure("SHA3-256, 1 KiB bodies (identity: node:crypto)", "MB/s", body.length, () =>
  sha3_256(body),
);
measure("SHA3-256, 1 KiB bodies (@noble/hashes, reference)", "MB/s", body.length, () =>
  nobleSha3_256(body),
);
const fields = {
  nonce: 1_700_000_000_000_000_000n,
  caller: keyPair.address,
  target: generateKeyPair().address,
  requestId: "req-1",
  bodyHash: sha3_256(body),
};
const requestSignature = signRequest(keyPair, fields);
measure("request: hash 1 KiB body + verify signature", "ops/s", 1, () => {
  const ok = verifyRequestSignature({ ...fields, bodyHash: sha3_256(body) }, requestSignature);
  if (!ok) throw new Error("verify failed");
});

const record = sampleNodeRecord(keyPair);
const difficulty = 14;
const started = process.hrtime.bigint();
let attempts = 0;
for (let round = 0; round < 4; round++) {
  const solved = await solveNodeRecordPow({ ...record, sequence: BigInt(round) }, difficulty);
  attempts += Number(solved.powNonce) + 1;
}
const powMs = Number(process.hrtime.bigint() - started) / 1e6;
console.log(
  `${"NodeRecord PoW (encode + SHA-256) attempts".padEnd(44)} ${((attempts / powMs) * 1000).toFixed(0).padStart(10)} attempts/s`,
);
