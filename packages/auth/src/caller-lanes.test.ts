import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import { createCallerLanes } from "./caller-lanes.js";

describe("caller lanes", () => {
  it("give each caller's calls their turn in arrival order, whatever order they finish in", async () => {
    const lanes = createCallerLanes();
    const order: string[] = [];
    const first = lanes.join("a");
    const second = lanes.join("a");
    const third = lanes.join("a");
    const other = lanes.join("b");
    const turns = [
      third.turn().then(() => order.push("a3")),
      second.turn().then(() => order.push("a2")),
      other.turn().then(() => order.push("b1")),
    ];
    await tick();
    assert.deepEqual(order, ["b1"], "another caller does not wait");
    second.done(); // the second finishing early does not let the third overtake the first
    await tick();
    assert.deepEqual(order, ["b1"]);
    first.done();
    await Promise.all(turns);
    assert.deepEqual(order, ["b1", "a2", "a3"]);
  });

  it("a call that leaves early still holds back later ones until earlier ones are done", async () => {
    const lanes = createCallerLanes();
    const first = lanes.join("a");
    const second = lanes.join("a");
    second.done();
    await tick();
    const third = lanes.join("a");
    let thirdTurn = false;
    void third.turn().then(() => {
      thirdTurn = true;
    });
    await tick();
    assert.equal(thirdTurn, false);
    first.done();
    await tick();
    await tick();
    assert.equal(thirdTurn, true);
  });

  it("empties when every call is done", async () => {
    const lanes = createCallerLanes();
    const tickets = [lanes.join("a"), lanes.join("a"), lanes.join("b")];
    for (const t of tickets) {
      t.done();
      t.done();
    }
    await tick();
    assert.equal(lanes.size, 0);
  });
});
