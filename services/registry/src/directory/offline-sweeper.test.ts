import assert from "node:assert/strict";
import { test } from "node:test";
import { createOfflineSweeper } from "./offline-sweeper.js";

test("the sweeper runs markOffline on its timer, reports who dropped out, and closes twice safely", async () => {
  const lapsed = [["tsr1a"], [], ["tsr1b", "tsr1c"]];
  let calls = 0;
  const reported: string[][] = [];
  let resolve = () => {};
  const twoReports = new Promise<void>((done) => {
    resolve = done;
  });
  const sweeper = createOfflineSweeper({
    directory: {
      async markOffline() {
        return lapsed[calls++] ?? [];
      },
    },
    intervalMs: 1,
    onOffline: (addresses) => {
      reported.push([...addresses]);
      if (reported.length === 2) resolve();
    },
  });
  // The sweeper's timer does not hold the process open; the test does, until the reports arrive.
  const keepAlive = setInterval(() => {}, 1000);
  await twoReports;
  clearInterval(keepAlive);
  await sweeper.close();
  await sweeper.close();
  assert.equal(sweeper.state, "closed");
  assert.deepEqual(reported, [["tsr1a"], ["tsr1b", "tsr1c"]], "empty sweeps are not reported");
  const callsAtClose = calls;
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(calls, callsAtClose, "no sweep after close");
});
