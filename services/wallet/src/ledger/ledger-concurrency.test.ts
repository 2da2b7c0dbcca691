import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { EscrowState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import { createLedger, type Ledger } from "./ledger.js";
import { assertSound } from "./test-assertions.js";
import {
  completionValidation,
  createFakeClock,
  createTestValidators,
  type FakeClock,
  openWalletStore,
  paymentTree,
  type TestValidators,
} from "./test-fixtures.js";

const HOUR_MS = 3_600_000;

await describeEachStore("ledger under concurrency", (backend: StoreBackend) => {
  let ledger: Ledger;
  /** A second wallet process on the same database (its own store, pool and batches). */
  let replica: Ledger;
  let clock: FakeClock;
  let validators: TestValidators;
  let space = 0;
  let client: KeyPair;
  let arbiter: KeyPair;
  let node: KeyPair;
  let treasury: KeyPair;

  beforeEach(async () => {
    space += 1;
    clock = createFakeClock();
    validators = createTestValidators();
    const open = async () =>
      createLedger({
        store: await openWalletStore(backend, `c${space}`),
        validatorSet: validators.source,
        clock: clock.now,
      });
    ledger = await open();
    replica = await open();
    [client, arbiter, node, treasury] = Array.from({ length: 4 }, () => generateKeyPair()) as [
      KeyPair,
      KeyPair,
      KeyPair,
      KeyPair,
    ];
    await ledger.applyGenesis([{ address: client.address, amount: "1000000" }]);
  });

  const available = async (key: KeyPair) =>
    (await ledger.balance(key.address, key.address)).available;

  function tree(amount: bigint) {
    const share = amount / 10n;
    return paymentTree([amount - 3n * share, share, share, share], {
      compute: node.address,
      gateway: arbiter.address,
      validators: validators.addresses.slice(0, 3),
      treasury: treasury.address,
    });
  }

  async function escrow(escrowId: string, amount: bigint) {
    await ledger.createEscrow(client.address, {
      escrowId,
      jobId: `job-${escrowId}`,
      payerAddress: client.address,
      amount: amount.toString(),
      arbiterAddress: arbiter.address,
      expiresAt: new Date(clock.now().getTime() + HOUR_MS),
      paymentTree: tree(amount),
    });
    return completionValidation({
      requestId: `job-${escrowId}`,
      tree: tree(amount),
      node,
      signers: validators.keys.slice(0, 3),
    });
  }

  test("100 parallel releases of one escrow, on two wallet processes, pay it once", async () => {
    const approval = await escrow("e-1", 1000n);
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        (i % 2 === 0 ? ledger : replica).releaseEscrow(arbiter.address, {
          escrowId: "e-1",
          completionValidation: approval,
        }),
      ),
    );
    for (const result of results)
      assert.deepEqual(result, results[0], "every caller sees one release");
    assert.equal(results[0]?.escrow.state, EscrowState.RELEASED);
    assert.equal(await available(node), 700n, "the compute node was paid once");
    assert.equal(await available(treasury), 100n);
    await assertSound(ledger);
  });

  test("a release racing a refund: exactly one of them wins, every time", async () => {
    const rounds = 20;
    const approvals = await Promise.all(
      Array.from({ length: rounds }, (_, i) => escrow(`race-${i}`, 1000n)),
    );
    const outcomes = await Promise.all(
      approvals.map(async (approval, i) => {
        const escrowId = `race-${i}`;
        // Vary who starts first, by how much, and which process serves which call.
        const [a, b] = i % 2 === 0 ? [ledger, replica] : [replica, ledger];
        const release = (async () => {
          await delay(i % 3);
          return a.releaseEscrow(arbiter.address, { escrowId, completionValidation: approval });
        })();
        const refund = (async () => {
          await delay(i % 4);
          return b.refundEscrow(arbiter.address, { escrowId, reason: "cancelled" });
        })();
        const [released, refunded] = await Promise.allSettled([release, refund]);
        const winners = [released, refunded].filter((r) => r.status === "fulfilled").length;
        assert.equal(winners, 1, `escrow ${escrowId}: exactly one of release and refund succeeds`);
        const state = (await ledger.getEscrow(escrowId, client.address)).state;
        assert.equal(
          state,
          released.status === "fulfilled" ? EscrowState.RELEASED : EscrowState.REFUNDED,
        );
        return released.status === "fulfilled" ? "released" : "refunded";
      }),
    );
    const releasedCount = outcomes.filter((o) => o === "released").length;
    assert.equal(await available(node), BigInt(releasedCount) * 700n);
    assert.equal(await available(client), 1_000_000n - BigInt(releasedCount) * 1000n);
    await assertSound(ledger);
  });

  test("100 parallel transfers with the same id, on two wallet processes, take effect once", async () => {
    const input = {
      transferId: "once",
      fromAddress: client.address,
      toAddress: node.address,
      amount: "1234",
    };
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        (i % 2 === 0 ? ledger : replica).transfer(client.address, input),
      ),
    );
    for (const result of results) assert.deepEqual(result, results[0]);
    assert.equal(await available(node), 1234n);
    assert.equal(await available(client), 1_000_000n - 1234n);
    await assertSound(ledger);
  });

  test("200 parallel transfers that overdraw: no balance goes negative, the rest are refused", async () => {
    const payer = generateKeyPair();
    await ledger.transfer(client.address, {
      transferId: "fund",
      fromAddress: client.address,
      toAddress: payer.address,
      amount: "10000",
    });
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) =>
        (i % 2 === 0 ? ledger : replica).transfer(payer.address, {
          transferId: `spend-${i}`,
          fromAddress: payer.address,
          toAddress: i % 3 === 0 ? node.address : treasury.address,
          amount: "150",
        }),
      ),
    );
    const paid = results.filter((r) => r.status === "fulfilled").length;
    assert.equal(paid, 66, "10,000 covers 66 payments of 150");
    for (const r of results) {
      if (r.status === "rejected") assert.match(String(r.reason), /insufficient funds/);
    }
    assert.equal(await available(payer), 10_000n - 66n * 150n);
    await assertSound(ledger);
  });
});
