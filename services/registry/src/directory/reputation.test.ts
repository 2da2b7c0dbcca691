import assert from "node:assert/strict";
import { test } from "node:test";
import { NodeEventKind } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import {
  applyNodeEvent,
  applyValidatorEvent,
  DEFAULT_BAN_PERIODS_MS,
  INITIAL_REPUTATION,
  type NodeCounters,
} from "./reputation.js";

const fresh: NodeCounters = {
  reputation: INITIAL_REPUTATION,
  strikes: 0,
  bans: 0,
  bannedUntilMs: null,
  jobsCompleted: 0,
  computeMs: 0,
};
const policy = { strikesPerBan: 3, banPeriodsMs: DEFAULT_BAN_PERIODS_MS };
const HOUR = 3_600_000;

test("reputation stays in [0, 1] however many events arrive", () => {
  let up = fresh;
  let down = fresh;
  for (let i = 0; i < 1000; i++) {
    up = applyNodeEvent(
      up,
      { kind: NodeEventKind.VALIDATION_PASSED, computeTimeMs: 0 },
      0,
      policy,
    ).counters;
    down = applyNodeEvent(
      down,
      { kind: NodeEventKind.VALIDATION_TIMED_OUT, computeTimeMs: 0 },
      0,
      policy,
    ).counters;
  }
  assert.ok(up.reputation <= 1 && up.reputation > 0.99);
  assert.ok(down.reputation >= 0 && down.reputation < 0.01);
  assert.equal(down.strikes, 0, "timeouts cost reputation, not strikes");
});

test("every third strike bans for 24 h, 48 h, then 168 h each time", () => {
  let counters = fresh;
  const bans: number[] = [];
  for (let i = 1; i <= 15; i++) {
    const now = i * 1000 * HOUR;
    const outcome = applyNodeEvent(
      counters,
      {
        kind: i % 2 ? NodeEventKind.JOB_ABANDONED : NodeEventKind.VALIDATION_FAILED,
        computeTimeMs: 0,
      },
      now,
      policy,
    );
    counters = outcome.counters;
    if (outcome.banStarted) bans.push((counters.bannedUntilMs ?? 0) - now);
  }
  assert.equal(counters.strikes, 15);
  assert.deepEqual(bans, [24 * HOUR, 48 * HOUR, 168 * HOUR, 168 * HOUR, 168 * HOUR]);
});

test("completed jobs count and add their compute time; unknown kinds are refused", () => {
  const { counters } = applyNodeEvent(
    fresh,
    { kind: NodeEventKind.JOB_COMPLETED, computeTimeMs: 1500 },
    0,
    policy,
  );
  assert.equal(counters.jobsCompleted, 1);
  assert.equal(counters.computeMs, 1500);
  assert.ok(counters.reputation > INITIAL_REPUTATION);
  assert.throws(() =>
    applyNodeEvent(fresh, { kind: NodeEventKind.UNSPECIFIED, computeTimeMs: 0 }, 0, policy),
  );
});

test("a validator's invalid signature costs more than a timeout; a good one earns it back slowly", () => {
  const timedOut = applyValidatorEvent(0.5, "timeout");
  const invalid = applyValidatorEvent(0.5, "invalid_signature");
  assert.ok(invalid < timedOut && timedOut < 0.5);
  const ok = applyValidatorEvent(0.5, "ok");
  assert.ok(ok > 0.5 && ok - 0.5 < 0.5 - timedOut);
});
