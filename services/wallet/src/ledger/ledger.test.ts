import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import {
  EscrowState,
  StakeState,
  TransactionKind,
} from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import type { Store } from "@tessera/store";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import type { Ledger } from "./ledger.js";
import { assertSound, rejectsWith, tablesSnapshot } from "./test-assertions.js";
import {
  completionValidation,
  type FakeClock,
  openTestLedger,
  paymentTree,
  type TestValidators,
  type WalletDb,
} from "./test-fixtures.js";

const HOUR_MS = 3_600_000;

await describeEachStore("ledger", (backend: StoreBackend) => {
  let ledger: Ledger;
  let store: Store<WalletDb>;
  let clock: FakeClock;
  let validators: TestValidators;
  let space = 0;
  // Actors: a client who pays, the job server (arbiter), a compute node, a gateway, the treasury.
  let client: KeyPair;
  let arbiter: KeyPair;
  let node: KeyPair;
  let gateway: KeyPair;
  let treasury: KeyPair;
  const auditor = generateKeyPair();

  beforeEach(async () => {
    space += 1;
    ({ ledger, store, clock, validators } = await openTestLedger(backend, {
      space: `l${space}`,
      faucet: { perCallLimit: 1_000n, perDayLimit: 1_500n },
      readers: [auditor.address],
    }));
    [client, arbiter, node, gateway, treasury] = Array.from({ length: 5 }, () =>
      generateKeyPair(),
    ) as [KeyPair, KeyPair, KeyPair, KeyPair, KeyPair];
    await ledger.applyGenesis([{ address: client.address, amount: "1000000" }]);
  });

  const available = async (key: KeyPair) =>
    (await ledger.balance(key.address, key.address)).available;

  function escrowInput(escrowId: string, amount: bigint, tree = fourWayTree(amount)) {
    return {
      escrowId,
      jobId: `job-${escrowId}`,
      payerAddress: client.address,
      amount: amount.toString(),
      arbiterAddress: arbiter.address,
      expiresAt: new Date(clock.now().getTime() + HOUR_MS),
      paymentTree: tree,
    };
  }

  /** 80 % compute, 10 % gateway, 5 % validators, 5 % treasury, like NCN's default split. */
  function fourWayTree(amount: bigint) {
    const gatewayShare = amount / 10n;
    const validatorShare = amount / 20n;
    const treasuryShare = amount / 20n;
    return paymentTree(
      [
        amount - gatewayShare - validatorShare - treasuryShare,
        gatewayShare,
        validatorShare,
        treasuryShare,
      ],
      {
        compute: node.address,
        gateway: gateway.address,
        validators: validators.addresses.slice(0, 3),
        treasury: treasury.address,
      },
    );
  }

  function approval(
    jobId: string,
    tree = fourWayTree(1000n),
    signers = validators.keys.slice(0, 3),
  ) {
    return completionValidation({ requestId: jobId, tree, node, signers });
  }

  test("genesis funds an address; a signed transfer moves money once per transfer id", async () => {
    const first = await ledger.transfer(client.address, {
      transferId: "t-1",
      fromAddress: client.address,
      toAddress: node.address,
      amount: "2500",
      referenceId: "quote-7",
      memo: "for the model",
    });
    assert.equal(first.kind, TransactionKind.TRANSFER);
    assert.equal(first.amount, "2500");
    assert.equal(await available(client), 997_500n);
    assert.equal(await available(node), 2_500n);

    const again = await ledger.transfer(client.address, {
      transferId: "t-1",
      fromAddress: client.address,
      toAddress: node.address,
      amount: "2500",
      referenceId: "quote-7",
      memo: "for the model",
    });
    assert.deepEqual(again, first, "a retry returns the original entry");
    assert.equal(await available(client), 997_500n, "and moves nothing");

    await rejectsWith(
      ledger.transfer(client.address, {
        transferId: "t-1",
        fromAddress: client.address,
        toAddress: node.address,
        amount: "2501",
      }),
      "already_exists",
    );
    await rejectsWith(
      ledger.transfer(node.address, {
        transferId: "t-2",
        fromAddress: client.address,
        toAddress: node.address,
        amount: "1",
      }),
      "permission_denied",
    );
    await rejectsWith(
      ledger.transfer(node.address, {
        transferId: "t-3",
        fromAddress: node.address,
        toAddress: client.address,
        amount: "2501",
      }),
      "failed_precondition",
      "insufficient_funds",
    );
    await assertSound(ledger);
  });

  test("escrow: a 3-of-5 approved release pays the four-way split in one go, by the remainder rule", async () => {
    // 1,000 units: compute 800, gateway 100, validators 50 (17/17/16), treasury 50.
    const created = await ledger.createEscrow(client.address, escrowInput("e-1", 1000n));
    assert.equal(created.escrow.state, EscrowState.HELD);
    assert.equal(created.transaction.kind, TransactionKind.ESCROW_LOCK);
    assert.equal(created.transaction.creditAccount, "escrow:e-1");
    const held = await ledger.balance(client.address, client.address);
    assert.deepEqual([held.available, held.held, held.total], [999_000n, 1_000n, 1_000_000n]);

    const released = await ledger.releaseEscrow(arbiter.address, {
      escrowId: "e-1",
      completionValidation: approval("job-e-1"),
    });
    assert.equal(released.escrow.state, EscrowState.RELEASED);
    assert.equal(released.escrow.releasedAmount, "1000");
    assert.equal(released.escrow.refundedAmount, "0");
    assert.deepEqual(
      released.transactions.map((t) => [t.transactionId, t.creditAccount, t.amount]),
      [
        ["escrow:e-1:release:0", node.address, "800"],
        ["escrow:e-1:release:1", gateway.address, "100"],
        ["escrow:e-1:release:2", validators.addresses[0], "17"],
        ["escrow:e-1:release:3", validators.addresses[1], "17"],
        ["escrow:e-1:release:4", validators.addresses[2], "16"],
        ["escrow:e-1:release:5", treasury.address, "50"],
      ],
    );
    assert.equal(await available(node), 800n);
    assert.equal(await available(treasury), 50n);
    const after = await ledger.balance(client.address, client.address);
    assert.deepEqual([after.available, after.held, after.total], [999_000n, 0n, 999_000n]);

    const retried = await ledger.releaseEscrow(arbiter.address, {
      escrowId: "e-1",
      completionValidation: approval("job-e-1"),
    });
    assert.deepEqual(
      retried,
      released,
      "releasing again with the same validation answers the same",
    );
    assert.equal(await available(node), 800n, "and pays nothing more");

    await rejectsWith(
      ledger.releaseEscrow(arbiter.address, {
        escrowId: "e-1",
        completionValidation: approval("job-e-1", fourWayTree(1000n), validators.keys.slice(1, 4)),
      }),
      "failed_precondition",
      "escrow_not_held",
    );
    await assertSound(ledger);
  });

  test("escrow without a tree: the validation's tree is paid and the remainder refunded", async () => {
    await ledger.createEscrow(client.address, {
      ...escrowInput("e-2", 5000n),
      paymentTree: undefined,
    });
    const tree = paymentTree([3000n, 0n, 10n, 0n], {
      compute: node.address,
      gateway: "",
      validators: validators.addresses.slice(0, 3),
      treasury: "",
    });
    const released = await ledger.releaseEscrow(arbiter.address, {
      escrowId: "e-2",
      completionValidation: approval("job-e-2", tree),
    });
    assert.deepEqual(
      released.transactions.map((t) => [t.kind, t.creditAccount, t.amount]),
      [
        [TransactionKind.ESCROW_RELEASE, node.address, "3000"],
        [TransactionKind.ESCROW_RELEASE, validators.addresses[0], "4"],
        [TransactionKind.ESCROW_RELEASE, validators.addresses[1], "3"],
        [TransactionKind.ESCROW_RELEASE, validators.addresses[2], "3"],
        [TransactionKind.ESCROW_REFUND, client.address, "1990"],
      ],
    );
    assert.equal(released.escrow.releasedAmount, "3010");
    assert.equal(released.escrow.refundedAmount, "1990");
    assert.equal(await available(client), 1_000_000n - 3010n);
    await assertSound(ledger);
  });

  test("refund: the arbiter any time, the payer only after expiry; a refunded escrow cannot be released", async () => {
    await ledger.createEscrow(client.address, escrowInput("e-3", 700n));
    await ledger.createEscrow(client.address, escrowInput("e-4", 300n));
    await rejectsWith(
      ledger.refundEscrow(client.address, { escrowId: "e-3", reason: "changed my mind" }),
      "failed_precondition",
      "not_expired",
    );
    await rejectsWith(ledger.refundEscrow(node.address, { escrowId: "e-3" }), "permission_denied");
    const byArbiter = await ledger.refundEscrow(arbiter.address, {
      escrowId: "e-3",
      reason: "cancelled",
    });
    assert.equal(byArbiter.escrow.state, EscrowState.REFUNDED);
    assert.equal(byArbiter.transaction.memo, "cancelled");
    assert.deepEqual(
      await ledger.refundEscrow(arbiter.address, { escrowId: "e-3", reason: "again" }),
      byArbiter,
      "refunding a refunded escrow returns it",
    );
    await rejectsWith(
      ledger.releaseEscrow(arbiter.address, {
        escrowId: "e-3",
        completionValidation: approval("job-e-3", fourWayTree(700n)),
      }),
      "failed_precondition",
      "escrow_not_held",
    );

    clock.advance(HOUR_MS);
    const byPayer = await ledger.refundEscrow(client.address, {
      escrowId: "e-4",
      reason: "expired",
    });
    assert.equal(byPayer.escrow.state, EscrowState.REFUNDED);
    assert.equal(await available(client), 1_000_000n);
    await rejectsWith(ledger.refundEscrow(arbiter.address, { escrowId: "missing" }), "not_found");
    await assertSound(ledger);
  });

  test("escrow ids are exactly-once; a released escrow cannot be refunded", async () => {
    const input = escrowInput("e-5", 1000n);
    const created = await ledger.createEscrow(client.address, input);
    assert.deepEqual(await ledger.createEscrow(client.address, input), created);
    await rejectsWith(
      ledger.createEscrow(client.address, { ...input, amount: "1001", paymentTree: undefined }),
      "already_exists",
    );
    await ledger.releaseEscrow(arbiter.address, {
      escrowId: "e-5",
      completionValidation: approval("job-e-5"),
    });
    await rejectsWith(
      ledger.refundEscrow(arbiter.address, { escrowId: "e-5" }),
      "failed_precondition",
      "escrow_not_held",
    );
    assert.equal((await ledger.getEscrow("e-5", client.address)).state, EscrowState.RELEASED);
    assert.equal((await ledger.getEscrow("e-5", node.address)).state, EscrowState.RELEASED);
    assert.equal((await ledger.getEscrow("e-5", auditor.address)).state, EscrowState.RELEASED);
    await rejectsWith(ledger.getEscrow("e-5", generateKeyPair().address), "permission_denied");
    await rejectsWith(ledger.getEscrow("nope", client.address), "not_found");
  });

  test("bad input is refused with invalid_argument naming the field, and nothing is written", async () => {
    await ledger.createEscrow(client.address, escrowInput("held", 1000n));
    const before = await tablesSnapshot(store);
    const transfer = (amount: string, to = node.address) =>
      ledger.transfer(client.address, {
        transferId: `bad-${amount.length}-${to.slice(-4)}`,
        fromAddress: client.address,
        toAddress: to,
        amount,
      });
    for (const [amount, pattern] of [
      ["-5", /amount: must not be negative/],
      ["0", /amount: must be greater than zero/],
      ["", /amount: an amount is required/],
      ["ten", /amount: must be a decimal integer/],
      ["+5", /amount: must be a decimal integer/],
      ["1.5", /amount: must be a decimal integer/],
      ["1e3", /amount: must be a decimal integer/],
      ["007", /amount: must be a decimal integer/],
      [" 5", /amount: must be a decimal integer/],
      ["18446744073709551616", /amount: must be at most 2\^64 - 1 \(18446744073709551615\)/],
      ["99999999999999999999999999999", /amount: must be at most 2\^64 - 1/],
    ] as const) {
      await rejectsWith(transfer(amount), "invalid_argument", pattern);
    }
    await rejectsWith(
      transfer("5", client.address),
      "invalid_argument",
      /to_address: a transfer to oneself/,
    );
    await rejectsWith(
      transfer("5", "tsr1notanaddress"),
      "invalid_argument",
      /to_address: .* is not an address/,
    );
    await rejectsWith(
      ledger.transfer(client.address, {
        transferId: "escrow:held:lock",
        fromAddress: client.address,
        toAddress: node.address,
        amount: "5",
      }),
      "invalid_argument",
      /transfer_id: must not start with "escrow:"/,
    );
    await rejectsWith(
      ledger.transfer(client.address, {
        transferId: "has space",
        fromAddress: client.address,
        toAddress: node.address,
        amount: "5",
      }),
      "invalid_argument",
      /transfer_id/,
    );

    const badTree = fourWayTree(1000n);
    badTree.computeAmount = "801";
    await rejectsWith(
      ledger.createEscrow(client.address, escrowInput("over", 1000n, badTree)),
      "invalid_argument",
      /payment_tree: its shares add up to 1001, more than the escrow's amount 1000/,
    );
    const negativeShare = fourWayTree(1000n);
    negativeShare.gatewayAmount = "-100";
    await rejectsWith(
      ledger.createEscrow(client.address, escrowInput("neg", 1000n, negativeShare)),
      "invalid_argument",
      /payment_tree.gateway_amount: must not be negative/,
    );
    const noGateway = fourWayTree(1000n);
    noGateway.gatewayAddress = "";
    await rejectsWith(
      ledger.createEscrow(client.address, escrowInput("nogw", 1000n, noGateway)),
      "invalid_argument",
      /payment_tree.gateway_address: a non-zero share needs an address/,
    );
    await rejectsWith(
      ledger.createEscrow(client.address, {
        ...escrowInput("past", 1000n),
        expiresAt: new Date(clock.now().getTime() - 1),
      }),
      "invalid_argument",
      /expires_at: must be in the future/,
    );
    await rejectsWith(
      ledger.createEscrow(client.address, escrowInput("rich", 2_000_000n)),
      "failed_precondition",
      "insufficient_funds",
    );
    await rejectsWith(
      ledger.releaseEscrow(arbiter.address, {
        escrowId: "unknown",
        completionValidation: approval("job-unknown"),
      }),
      "not_found",
    );
    assert.equal(await tablesSnapshot(store), before, "no refused call wrote anything");
    await assertSound(ledger);
  });

  test("a release without a valid approval is refused and pays nothing", async () => {
    await ledger.createEscrow(client.address, escrowInput("e-6", 1000n));
    const before = await tablesSnapshot(store);
    const release = (completionValidation: ReturnType<typeof approval>, caller = arbiter) =>
      ledger.releaseEscrow(caller.address, { escrowId: "e-6", completionValidation });

    await rejectsWith(
      release(approval("job-e-6", fourWayTree(1000n), validators.keys.slice(0, 2))),
      "failed_precondition",
      /2 validator signature\(s\), 3 required/,
    );
    const tampered = approval("job-e-6");
    if (tampered.terms?.paymentTree) tampered.terms.paymentTree.computeAddress = client.address;
    await rejectsWith(release(tampered), "failed_precondition", /differs from escrow e-6's/);
    const resigned = approval("job-e-6");
    if (resigned.terms) resigned.terms.approved = true;
    const flipped = resigned.validatorSignatures[0]?.signature;
    if (flipped) flipped[0] = (flipped[0] ?? 0) ^ 1;
    await rejectsWith(release(resigned), "failed_precondition", /signature 1 .* does not verify/);
    await rejectsWith(
      release(approval("job-other")),
      "failed_precondition",
      /is for request "job-other", the escrow pays for "job-e-6"/,
    );
    await rejectsWith(
      release(
        completionValidation({
          requestId: "job-e-6",
          tree: fourWayTree(1000n),
          node,
          signers: validators.keys.slice(0, 3),
          approved: false,
        }),
      ),
      "failed_precondition",
      /rejected the work/,
    );
    const strangers = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
    await rejectsWith(
      release(approval("job-e-6", fourWayTree(1000n), strangers)),
      "failed_precondition",
      /not by a listed validator/,
    );
    await rejectsWith(release(approval("job-e-6"), node), "permission_denied");
    await rejectsWith(
      ledger.releaseEscrow(arbiter.address, { escrowId: "e-6", completionValidation: undefined }),
      "invalid_argument",
      /completion_validation: is required/,
    );
    assert.equal(await tablesSnapshot(store), before, "no refused release wrote anything");
    await assertSound(ledger);
  });

  test("stakes: locked by the validator, slashed to the treasury and unlocked by the arbiter", async () => {
    const validator = generateKeyPair();
    const registry = generateKeyPair();
    await ledger.transfer(client.address, {
      transferId: "fund-validator",
      fromAddress: client.address,
      toAddress: validator.address,
      amount: "10000",
    });
    await rejectsWith(
      ledger.lockStake(client.address, {
        stakeId: "s-1",
        stakerAddress: validator.address,
        amount: "1",
        arbiterAddress: registry.address,
      }),
      "permission_denied",
    );
    const lockInput = {
      stakeId: "s-1",
      stakerAddress: validator.address,
      amount: "6000",
      arbiterAddress: registry.address,
    };
    const locked = await ledger.lockStake(validator.address, lockInput);
    assert.equal(locked.stake.state, StakeState.LOCKED);
    assert.deepEqual(await ledger.lockStake(validator.address, lockInput), locked);
    await rejectsWith(
      ledger.lockStake(validator.address, { ...lockInput, amount: "5" }),
      "already_exists",
    );
    const balance = await ledger.balance(validator.address, validator.address);
    assert.deepEqual([balance.available, balance.staked, balance.total], [4000n, 6000n, 10000n]);

    const slashInput = {
      slashId: "slash-1",
      stakeId: "s-1",
      amount: "2500",
      beneficiaryAddress: treasury.address,
      reason: "signed a bad approval",
    };
    await rejectsWith(ledger.slashStake(validator.address, slashInput), "permission_denied");
    const slashed = await ledger.slashStake(registry.address, slashInput);
    assert.equal(slashed.stake.amount, "3500");
    assert.equal(slashed.stake.slashedAmount, "2500");
    assert.equal(slashed.transaction.creditAccount, treasury.address);
    const replay = await ledger.slashStake(registry.address, slashInput);
    assert.deepEqual(replay.transaction, slashed.transaction, "a retried slash takes nothing more");
    assert.equal(await available(treasury), 2500n);

    const unlocked = await ledger.unlockStake(registry.address, { stakeId: "s-1", reason: "left" });
    assert.equal(unlocked.stake.state, StakeState.UNLOCKED);
    assert.equal(unlocked.transaction?.amount, "3500");
    assert.deepEqual(await ledger.unlockStake(registry.address, { stakeId: "s-1" }), unlocked);
    await rejectsWith(
      ledger.slashStake(registry.address, { ...slashInput, slashId: "slash-2" }),
      "failed_precondition",
      "stake_not_locked",
    );
    assert.equal(await available(validator), 7500n);

    await ledger.lockStake(validator.address, { ...lockInput, stakeId: "s-2", amount: "1000" });
    const wiped = await ledger.slashStake(registry.address, {
      ...slashInput,
      slashId: "slash-3",
      stakeId: "s-2",
      amount: "999999",
    });
    assert.equal(wiped.transaction.amount, "1000", "more than remains is lowered to what remains");
    assert.equal(wiped.stake.state, StakeState.SLASHED);
    await rejectsWith(
      ledger.unlockStake(registry.address, { stakeId: "s-2" }),
      "failed_precondition",
      "stake_not_locked",
    );
    assert.equal((await ledger.getStake("s-2")).state, StakeState.SLASHED);
    await rejectsWith(ledger.getStake("s-3"), "not_found");
    await assertSound(ledger);
  });

  test("faucet: per-call and per-day limits, idempotent, counted in the supply", async () => {
    const before = await ledger.checkInvariants();
    const first = await ledger.faucet(node.address, {
      transferId: "f-1",
      address: node.address,
      amount: "1000",
    });
    assert.equal(first.debitAccount, "faucet");
    assert.deepEqual(
      await ledger.faucet(node.address, {
        transferId: "f-1",
        address: node.address,
        amount: "1000",
      }),
      first,
    );
    await rejectsWith(
      ledger.faucet(node.address, { transferId: "f-2", address: node.address, amount: "1001" }),
      "resource_exhausted",
      /at most 1000 base units per faucet call/,
    );
    await rejectsWith(
      ledger.faucet(node.address, { transferId: "f-3", address: node.address, amount: "501" }),
      "resource_exhausted",
      /at most 1500 a day/,
    );
    await ledger.faucet(node.address, { transferId: "f-4", address: node.address, amount: "500" });
    clock.advance(24 * HOUR_MS);
    await ledger.faucet(node.address, { transferId: "f-5", address: node.address, amount: "1000" });
    assert.equal(await available(node), 2500n);
    const after = await ledger.checkInvariants();
    assert.deepEqual(after.violations, []);
    assert.equal(after.supply, before.supply + 2500n);
  });

  test("genesis is applied once and cannot change", async () => {
    await ledger.applyGenesis([{ address: client.address, amount: "1000000" }]);
    assert.equal(await available(client), 1_000_000n);
    await rejectsWith(
      ledger.applyGenesis([{ address: client.address, amount: "2000000" }]),
      "failed_precondition",
      /genesis cannot change/,
    );
    assert.equal((await ledger.checkInvariants()).supply, 1_000_000n);
  });

  test("history: newest first, paged with tokens, filtered by kind, time, counterparty and reference", async () => {
    for (let i = 0; i < 5; i += 1) {
      await ledger.transfer(client.address, {
        transferId: `h-${i}`,
        fromAddress: client.address,
        toAddress: i % 2 === 0 ? node.address : gateway.address,
        amount: `${i + 1}`,
        referenceId: i === 3 ? "quote-3" : "",
      });
      clock.advance(1000);
    }
    await ledger.createEscrow(client.address, escrowInput("e-h", 100n));
    const all = await ledger.history({ address: client.address }, client.address);
    assert.deepEqual(
      all.transactions.map((t) => t.transactionId),
      ["escrow:e-h:lock", "h-4", "h-3", "h-2", "h-1", "h-0", `genesis:${client.address}`],
    );

    const pages: string[][] = [];
    let pageToken = "";
    do {
      const page = await ledger.history(
        { address: client.address, pageSize: 3, pageToken },
        client.address,
      );
      pages.push(page.transactions.map((t) => t.transactionId));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    assert.deepEqual(
      pages.flat(),
      all.transactions.map((t) => t.transactionId),
    );
    assert.deepEqual(
      pages.map((p) => p.length),
      [3, 3, 1],
    );

    const ids = async (query: Parameters<Ledger["history"]>[0]) =>
      (await ledger.history(query, auditor.address)).transactions.map((t) => t.transactionId);
    assert.deepEqual(await ids({ address: client.address, kinds: [TransactionKind.ESCROW_LOCK] }), [
      "escrow:e-h:lock",
    ]);
    assert.deepEqual(await ids({ address: client.address, counterparty: gateway.address }), [
      "h-3",
      "h-1",
    ]);
    assert.deepEqual(await ids({ address: node.address, counterparty: client.address }), [
      "h-4",
      "h-2",
      "h-0",
    ]);
    assert.deepEqual(await ids({ address: client.address, referenceId: "quote-3" }), ["h-3"]);
    const start = new Date("2030-01-01T00:00:01Z").getTime();
    assert.deepEqual(
      await ids({
        address: client.address,
        kinds: [TransactionKind.TRANSFER],
        startMs: start,
        endMs: start + 2000,
      }),
      ["h-2", "h-1"],
    );

    const firstPage = await ledger.history(
      { address: client.address, pageSize: 2 },
      client.address,
    );
    await rejectsWith(
      ledger.history(
        {
          address: client.address,
          pageSize: 2,
          pageToken: firstPage.nextPageToken,
          counterparty: node.address,
        },
        client.address,
      ),
      "invalid_argument",
      /page_token: was issued for other filters/,
    );
    await rejectsWith(
      ledger.history({ address: client.address, pageToken: "garbage!" }, client.address),
      "invalid_argument",
      /page_token/,
    );
    await rejectsWith(
      ledger.history({ address: client.address }, node.address),
      "permission_denied",
    );
    await rejectsWith(ledger.balance(client.address, node.address), "permission_denied");
  });

  test("no validator set, no release: unavailable, and the escrow stays held", async () => {
    const down = {
      getValidatorSet: () => Promise.reject(new Error("registry unreachable")),
    };
    const { ledger: cut, store: cutStore } = await openTestLedger(backend, {
      space: `down${space}`,
      validators: { ...validators, source: down },
    });
    await cut.applyGenesis([{ address: client.address, amount: "5000" }]);
    await cut.createEscrow(client.address, escrowInput("e-7", 1000n));
    const before = await tablesSnapshot(cutStore);
    await rejectsWith(
      cut.releaseEscrow(arbiter.address, {
        escrowId: "e-7",
        completionValidation: approval("job-e-7"),
      }),
      "unavailable",
      /validator set cannot be read/,
    );
    assert.equal(await tablesSnapshot(cutStore), before);
  });

  test("a disabled faucet is unimplemented", async () => {
    const { ledger: plain } = await openTestLedger(backend, { space: `nofaucet${space}` });
    assert.equal(plain.faucetEnabled, false);
    await rejectsWith(
      plain.faucet(node.address, { transferId: "f", address: node.address, amount: "1" }),
      "unimplemented",
    );
  });
});
