import assert from "node:assert/strict";
import { test } from "node:test";
import { createStakeReleaseSweeper } from "./stake-release-sweeper.js";

test("the stake-release sweeper returns due stakes on its timer, survives a failure, and closes twice safely", async () => {
  const rounds: (string[] | Error)[] = [["stake-a"], new Error("wallet down"), [], ["stake-b"]];
  let calls = 0;
  const released: string[][] = [];
  const errors: unknown[] = [];
  let done = () => {};
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const sweeper = createStakeReleaseSweeper({
    directory: {
      async releaseDueStakes() {
        const round = rounds[calls++] ?? [];
        if (round instanceof Error) throw round;
        return round;
      },
    },
    intervalMs: 1,
    onReleased: (stakeIds) => {
      released.push([...stakeIds]);
      if (released.length === 2) done();
    },
    onError: (error) => errors.push(error),
  });
  // The sweeper's timer does not hold the process open; the test does, until the reports arrive.
  const keepAlive = setInterval(() => {}, 1000);
  await finished;
  clearInterval(keepAlive);
  await sweeper.close();
  await sweeper.close();
  assert.equal(sweeper.state, "closed");
  assert.deepEqual(released, [["stake-a"], ["stake-b"]], "empty sweeps are not reported");
  assert.equal((errors[0] as Error).message, "wallet down");
});
