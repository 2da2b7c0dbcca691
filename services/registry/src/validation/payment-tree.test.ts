import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { generateKeyPair } from "@tessera/identity/keys";
import {
  buildPaymentTree,
  DEFAULT_PAYMENT_SPLIT,
  parsePaymentSplit,
  paymentTreeTotal,
} from "./payment-tree.js";

const payees = {
  computeAddress: generateKeyPair().address,
  gatewayAddress: generateKeyPair().address,
  validatorAddresses: [generateKeyPair().address],
  treasuryAddress: generateKeyPair().address,
};

describe("payment trees", () => {
  test("the default split pays 80/10/5/5 percent", () => {
    const tree = buildPaymentTree(1_000_000n, DEFAULT_PAYMENT_SPLIT, payees);
    assert.deepEqual(
      [tree.computeAmount, tree.gatewayAmount, tree.validatorAmount, tree.treasuryAmount],
      ["800000", "100000", "50000", "50000"],
    );
    assert.equal(tree.computeAddress, payees.computeAddress);
    assert.equal(tree.treasuryAddress, payees.treasuryAddress);
  });

  test("rounding leftovers go to the compute node and the shares add up exactly", () => {
    for (const total of [0n, 1n, 19n, 999n, 10n ** 40n + 7n]) {
      const tree = buildPaymentTree(total, DEFAULT_PAYMENT_SPLIT, payees);
      assert.equal(paymentTreeTotal(tree), total);
    }
    const tree = buildPaymentTree(19n, DEFAULT_PAYMENT_SPLIT, payees);
    assert.deepEqual(
      [tree.computeAmount, tree.gatewayAmount, tree.validatorAmount, tree.treasuryAmount],
      ["18", "1", "0", "0"],
    );
  });

  test("a configured split parses, and a split that does not add up is refused", () => {
    assert.deepEqual(parsePaymentSplit("7000/2000/500/500"), {
      computeBps: 7000,
      gatewayBps: 2000,
      validatorBps: 500,
      treasuryBps: 500,
    });
    assert.throws(() => parsePaymentSplit("8000/1000/500/400"), /add up to 9900/);
    assert.throws(() => parsePaymentSplit("80/10/5"), /four basis-point integers/);
  });
});
