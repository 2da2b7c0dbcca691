import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { sha256 } from "./hash.js";
import {
  leadingZeroBits,
  ProofOfWorkExhaustedError,
  solveProofOfWork,
  solveProofOfWorkAsync,
  verifyProofOfWork,
} from "./proof-of-work.js";

const payload = new TextEncoder().encode("node record bytes");
const bytesFor = (nonce: bigint): Uint8Array => {
  const out = new Uint8Array(payload.length + 8);
  out.set(payload);
  new DataView(out.buffer).setBigUint64(payload.length, nonce);
  return out;
};

describe("proof of work", () => {
  it("counts leading zero bits", () => {
    assert.equal(leadingZeroBits(Uint8Array.of(0x80)), 0);
    assert.equal(leadingZeroBits(Uint8Array.of(0x01)), 7);
    assert.equal(leadingZeroBits(Uint8Array.of(0, 0, 0x10)), 19);
    assert.equal(leadingZeroBits(new Uint8Array(4)), 32);
  });

  it("finds a nonce at difficulty d that verifies, and fails when a byte changes", () => {
    for (const difficulty of [0, 1, 8, 12]) {
      const solution = solveProofOfWork(bytesFor, difficulty);
      const bytes = bytesFor(solution.nonce);
      assert.ok(leadingZeroBits(sha256(bytes)) >= difficulty);
      assert.ok(verifyProofOfWork(bytes, difficulty));
      assert.deepEqual(solution.hash, sha256(bytes));
    }
    const solution = solveProofOfWork(bytesFor, 12);
    const bytes = bytesFor(solution.nonce);
    let rejected = 0;
    for (let i = 0; i < bytes.length; i++) {
      const changed = Uint8Array.from(bytes);
      changed[i] = (changed[i] as number) ^ 0x01;
      if (!verifyProofOfWork(changed, 12)) rejected++;
    }
    // Each changed input still meets 12 bits with probability 2^-12.
    assert.ok(rejected >= bytes.length - 1, `${rejected} of ${bytes.length} rejected`);
  });

  it("rejects a proof that claims more difficulty than it has", () => {
    const solution = solveProofOfWork(bytesFor, 8);
    const bytes = bytesFor(solution.nonce);
    const bits = leadingZeroBits(sha256(bytes));
    assert.equal(verifyProofOfWork(bytes, bits + 1), false);
    assert.equal(verifyProofOfWork(bytes, -1), false);
    assert.equal(verifyProofOfWork(bytes, 257), false);
  });

  it("gives up after maxAttempts and refuses a bad difficulty", async () => {
    assert.throws(
      () => solveProofOfWork(bytesFor, 64, { maxAttempts: 100 }),
      ProofOfWorkExhaustedError,
    );
    assert.throws(() => solveProofOfWork(bytesFor, 1.5), RangeError);
    await assert.rejects(solveProofOfWorkAsync(bytesFor, 257), RangeError);
  });

  it("async solving agrees with sync solving and can be aborted", async () => {
    const sync = solveProofOfWork(bytesFor, 10);
    const async = await solveProofOfWorkAsync(bytesFor, 10, { attemptsPerYield: 16 });
    assert.equal(async.nonce, sync.nonce);
    const controller = new AbortController();
    const pending = solveProofOfWorkAsync(bytesFor, 200, {
      attemptsPerYield: 16,
      signal: controller.signal,
    });
    controller.abort(new Error("stop"));
    await assert.rejects(pending, /stop/);
  });
});
