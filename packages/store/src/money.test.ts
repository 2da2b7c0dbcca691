import assert from "node:assert/strict";
import { test } from "node:test";
import { fromMoney, MONEY_DIGITS, MONEY_MAX, toMoney } from "./money.js";

test("toMoney writes fixed-width digits that fromMoney reads back exactly", () => {
  for (const value of [0n, 1n, 2n ** 64n, 2n ** 100n, 2n ** 128n, 2n ** 256n, MONEY_MAX]) {
    const stored = toMoney(value);
    assert.equal(stored.length, MONEY_DIGITS);
    assert.equal(fromMoney(stored), value);
  }
  assert.equal(toMoney(42n), `${"0".repeat(76)}42`);
});

test("toMoney refuses values no money column can hold", () => {
  assert.throws(() => toMoney(-1n), RangeError);
  assert.throws(() => toMoney(MONEY_MAX + 1n), RangeError);
  assert.throws(() => toMoney(1 as unknown as bigint), TypeError);
});

test("fromMoney accepts plain digits and refuses anything it would have to guess at", () => {
  assert.equal(fromMoney("42"), 42n);
  for (const bad of ["", "-1", "+1", "1.5", "1e3", " 1", "0x10", "9".repeat(79)]) {
    assert.throws(() => fromMoney(bad), RangeError, JSON.stringify(bad));
  }
});
