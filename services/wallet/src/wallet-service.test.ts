import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
} from "@connectrpc/connect";
import { createSigningInterceptor, createVerifyingInterceptor } from "@tessera/auth";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import {
  EscrowState,
  StakeState,
  TransactionKind,
} from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import {
  GetBalanceRequestSchema,
  WalletService,
} from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { createNonceStore } from "@tessera/store";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import type { Ledger } from "./ledger/ledger.js";
import {
  completionValidation,
  type FakeClock,
  openTestLedger,
  paymentTree,
  type TestValidators,
} from "./ledger/test-fixtures.js";
import { createWalletService, toConnectError } from "./wallet-service.js";

const V1 = { major: 1, minor: 0, patch: 0 };

/** Asserts that `promise` fails with `code` and a message matching `message`. */
async function rejectsWithCode(promise: Promise<unknown>, code: Code, message?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, code, `${Code[error.code]}: ${error.rawMessage}`);
    if (message !== undefined) assert.match(error.rawMessage, message);
    return true;
  });
}

await describeEachStore("WalletService over signed in-memory calls", (backend: StoreBackend) => {
  const walletKey = generateKeyPair();
  const nonces = createNonceSource();
  let clientFor: (keyPair?: KeyPair) => Client<typeof WalletService>;
  let ledger: Ledger;
  let clock: FakeClock;
  let validators: TestValidators;
  let payer: KeyPair;
  let jobServer: KeyPair;
  let node: KeyPair;
  let treasury: KeyPair;
  let space = 0;

  beforeEach(async () => {
    space += 1;
    const opened = await openTestLedger(backend, {
      space: `s${space}`,
      faucet: { perCallLimit: 10_000n, perDayLimit: 50_000n },
    });
    ({ ledger, clock, validators } = opened);
    [payer, jobServer, node, treasury] = Array.from({ length: 4 }, () => generateKeyPair()) as [
      KeyPair,
      KeyPair,
      KeyPair,
      KeyPair,
    ];
    await ledger.applyGenesis([{ address: payer.address, amount: "100000" }]);
    const service = createWalletService({ ledger });
    const verifier = createVerifyingInterceptor({
      selfAddress: walletKey.address,
      nonceStore: createNonceStore(opened.store),
    });
    clientFor = (keyPair) =>
      createClient(
        WalletService,
        createRouterTransport((router) => router.service(WalletService, service), {
          router: { interceptors: [verifier] },
          transport: {
            interceptors:
              keyPair === undefined
                ? []
                : [
                    createSigningInterceptor({
                      keyPair,
                      target: walletKey.address,
                      nonceSource: nonces,
                    }),
                  ],
          },
        }),
      );
  });

  function tree(amount: bigint) {
    const share = amount / 10n;
    return paymentTree([amount - 3n * share, share, share, share], {
      compute: node.address,
      gateway: jobServer.address,
      validators: validators.addresses.slice(0, 4),
      treasury: treasury.address,
    });
  }

  test("a client funds an escrow, the job server releases it with the validators' approval", async () => {
    const client = clientFor(payer);
    const created = await client.createEscrow({
      protocolVersion: V1,
      escrowId: "job-42-escrow",
      jobId: "job-42",
      payerAddress: payer.address,
      amount: "10000",
      arbiterAddress: jobServer.address,
      expiresAt: timestampFromDate(new Date(clock.now().getTime() + 3_600_000)),
      paymentTree: tree(10_000n),
    });
    assert.equal(created.escrow?.state, EscrowState.HELD);
    assert.equal(created.transaction?.kind, TransactionKind.ESCROW_LOCK);

    const balance = await client.getBalance({ protocolVersion: V1, address: payer.address });
    assert.deepEqual(
      [balance.available, balance.held, balance.staked, balance.total],
      ["90000", "10000", "0", "100000"],
    );

    const approval = completionValidation({
      requestId: "job-42",
      tree: tree(10_000n),
      node,
      signers: validators.keys.slice(0, 3),
    });
    // Only the arbiter may release, even with a valid approval in hand.
    await rejectsWithCode(
      clientFor(node).releaseEscrow({
        protocolVersion: V1,
        escrowId: "job-42-escrow",
        completionValidation: approval,
      }),
      Code.PermissionDenied,
      /only the arbiter/,
    );
    const released = await clientFor(jobServer).releaseEscrow({
      protocolVersion: V1,
      escrowId: "job-42-escrow",
      completionValidation: approval,
    });
    assert.equal(released.escrow?.state, EscrowState.RELEASED);
    // 7000 compute, 1000 gateway, 1000 across four validators (250 each), 1000 treasury.
    assert.deepEqual(
      released.transactions.map((t) => t.amount),
      ["7000", "1000", "250", "250", "250", "250", "1000"],
    );
    const nodeBalance = await clientFor(node).getBalance({
      protocolVersion: V1,
      address: node.address,
    });
    assert.equal(nodeBalance.available, "7000");

    const seen = await clientFor(node).getEscrow({
      protocolVersion: V1,
      escrowId: "job-42-escrow",
    });
    assert.equal(seen.escrow?.releasedAmount, "10000");
    const history = await client.getTransactionHistory({
      protocolVersion: V1,
      address: payer.address,
      kinds: [TransactionKind.ESCROW_LOCK],
    });
    assert.deepEqual(
      history.transactions.map((t) => t.transactionId),
      ["escrow:job-42-escrow:lock"],
    );
  });

  test("errors map to Connect codes: bad amount, self-transfer, overdraft, unknown escrow, bad quorum", async () => {
    const client = clientFor(payer);
    const transfer = (amount: string, to = node.address, transferId = `t-${amount}`) =>
      client.transfer({
        protocolVersion: V1,
        transferId,
        fromAddress: payer.address,
        toAddress: to,
        amount,
      });
    await rejectsWithCode(transfer("-1"), Code.InvalidArgument, /amount: must not be negative/);
    await rejectsWithCode(transfer("0"), Code.InvalidArgument, /amount/);
    await rejectsWithCode(transfer("abc"), Code.InvalidArgument, /amount/);
    await rejectsWithCode(
      transfer("18446744073709551616"),
      Code.InvalidArgument,
      /at most 2\^64 - 1 \(18446744073709551615\)/,
    );
    await rejectsWithCode(transfer("5", payer.address), Code.InvalidArgument, /to oneself/);
    await rejectsWithCode(transfer("100001"), Code.FailedPrecondition, /insufficient funds/);
    const first = await transfer("5", node.address, "same-id");
    assert.deepEqual((await transfer("5", node.address, "same-id")).transaction, first.transaction);
    await rejectsWithCode(transfer("6", node.address, "same-id"), Code.AlreadyExists);
    await rejectsWithCode(
      client.releaseEscrow({
        protocolVersion: V1,
        escrowId: "nope",
        completionValidation: completionValidation({
          requestId: "job",
          tree: tree(1000n),
          node,
          signers: validators.keys.slice(0, 3),
        }),
      }),
      Code.NotFound,
    );

    await client.createEscrow({
      protocolVersion: V1,
      escrowId: "e-q",
      jobId: "job-q",
      payerAddress: payer.address,
      amount: "1000",
      arbiterAddress: jobServer.address,
      expiresAt: timestampFromDate(new Date(clock.now().getTime() + 60_000)),
      paymentTree: tree(1000n),
    });
    await rejectsWithCode(
      clientFor(jobServer).releaseEscrow({
        protocolVersion: V1,
        escrowId: "e-q",
        completionValidation: completionValidation({
          requestId: "job-q",
          tree: tree(1000n),
          node,
          signers: validators.keys.slice(0, 2),
        }),
      }),
      Code.FailedPrecondition,
      /2 validator signature\(s\), 3 required/,
    );
    await rejectsWithCode(
      client.refundEscrow({ protocolVersion: V1, escrowId: "e-q", reason: "impatient" }),
      Code.FailedPrecondition,
      /may refund it only after/,
    );
    await rejectsWithCode(
      client.transfer({
        protocolVersion: { major: 2, minor: 0, patch: 0 },
        transferId: "v2",
        fromAddress: payer.address,
        toAddress: node.address,
        amount: "1",
      }),
      Code.FailedPrecondition,
      /protocol version 2\.0\.0 is not compatible with this wallet's 1\.0\.0/,
    );
    await rejectsWithCode(
      client.transfer({
        transferId: "nov",
        fromAddress: payer.address,
        toAddress: node.address,
        amount: "1",
      }),
      Code.InvalidArgument,
      /protocol_version is required/,
    );
  });

  test("callers are the signed ones: unsigned calls and other people's money are refused", async () => {
    await rejectsWithCode(
      clientFor().getBalance(
        create(GetBalanceRequestSchema, { protocolVersion: V1, address: payer.address }),
      ),
      Code.Unauthenticated,
    );
    await rejectsWithCode(
      clientFor(node).getBalance({ protocolVersion: V1, address: payer.address }),
      Code.PermissionDenied,
    );
    await rejectsWithCode(
      clientFor(node).transfer({
        protocolVersion: V1,
        transferId: "steal",
        fromAddress: payer.address,
        toAddress: node.address,
        amount: "1",
      }),
      Code.PermissionDenied,
    );
  });

  test("stakes and the faucet through the service", async () => {
    const registry = generateKeyPair();
    const validator = clientFor(node);
    await validator.faucet({
      protocolVersion: V1,
      transferId: "drip-1",
      address: node.address,
      amount: "9000",
    });
    const locked = await validator.lockStake({
      protocolVersion: V1,
      stakeId: "bond-1",
      stakerAddress: node.address,
      amount: "8000",
      arbiterAddress: registry.address,
    });
    assert.equal(locked.stake?.state, StakeState.LOCKED);
    const slashed = await clientFor(registry).slashStake({
      protocolVersion: V1,
      slashId: "penalty-1",
      stakeId: "bond-1",
      amount: "3000",
      beneficiaryAddress: treasury.address,
      reason: "bad approval",
    });
    assert.equal(slashed.stake?.amount, "5000");
    const read = await clientFor().getStake({ protocolVersion: V1, stakeId: "bond-1" });
    assert.equal(read.stake?.slashedAmount, "3000");
    const unlocked = await clientFor(registry).unlockStake({
      protocolVersion: V1,
      stakeId: "bond-1",
    });
    assert.equal(unlocked.transaction?.amount, "5000");
    await rejectsWithCode(
      validator.faucet({
        protocolVersion: V1,
        transferId: "drip-2",
        address: node.address,
        amount: "10001",
      }),
      Code.ResourceExhausted,
    );
  });

  test("toConnectError hides unexpected errors as internal", () => {
    const error = toConnectError(new Error("database password is hunter2"));
    assert.equal(error.code, Code.Internal);
    assert.equal(error.rawMessage, "internal error");
  });
});
