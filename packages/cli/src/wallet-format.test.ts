import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { PaymentTreeSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  EscrowSchema,
  EscrowState,
  TransactionKind,
  TransactionRecordSchema,
} from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import {
  GetBalanceResponseSchema,
  GetTransactionHistoryResponseSchema,
  TransferResponseSchema,
} from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import {
  formatBalance,
  formatEscrow,
  formatHistory,
  formatJson,
  formatTransfer,
} from "./wallet-format.js";

const ME = "tsr1me";
const BOB = "tsr1bob";
const BIG = "340282366920938463463374607431768211455"; // 2^128 - 1: far beyond a JS number
const at = (iso: string) => timestampFromDate(new Date(iso));

describe("formatBalance", () => {
  it("prints every part of the balance exactly as sent", () => {
    const text = formatBalance(
      create(GetBalanceResponseSchema, {
        address: ME,
        available: BIG,
        held: "250",
        staked: "0",
        total: "340282366920938463463374607431768211705",
      }),
    );
    assert.equal(
      text,
      `address: ${ME}\navailable: ${BIG}\nheld: 250\nstaked: 0\ntotal: 340282366920938463463374607431768211705\n`,
    );
  });
});

describe("formatTransfer", () => {
  it("starts with the transfer id and shows memo and reference only when set", () => {
    const record = create(TransactionRecordSchema, {
      transactionId: "t-1",
      kind: TransactionKind.TRANSFER,
      debitAccount: ME,
      creditAccount: BOB,
      amount: "1500",
      createdAt: at("2025-03-01T12:00:00.250Z"),
    });
    assert.equal(
      formatTransfer(record),
      `transfer id: t-1\nfrom: ${ME}\nto: ${BOB}\namount: 1500\ntime: 2025-03-01T12:00:00.250Z\n`,
    );
    record.memo = "lunch";
    record.referenceId = "quote-9";
    assert.match(formatTransfer(record), /\namount: 1500\nreference: quote-9\nmemo: lunch\ntime: /);
  });
});

describe("formatHistory", () => {
  const page = create(GetTransactionHistoryResponseSchema, {
    transactions: [
      {
        transactionId: "t-2",
        kind: TransactionKind.TRANSFER,
        debitAccount: ME,
        creditAccount: BOB,
        amount: "5",
        createdAt: at("2025-03-01T12:00:02Z"),
      },
      {
        transactionId: "escrow:e1:lock",
        kind: TransactionKind.ESCROW_LOCK,
        debitAccount: ME,
        creditAccount: "escrow:e1",
        amount: "1000",
        createdAt: at("2025-03-01T12:00:01Z"),
      },
      {
        transactionId: "t-1",
        kind: TransactionKind.FAUCET,
        debitAccount: "faucet",
        creditAccount: ME,
        amount: BIG,
        createdAt: at("2025-03-01T12:00:00Z"),
      },
    ],
    nextPageToken: "tok-3",
  });

  it("shows each entry from the address's side: the other account, + in and - out", () => {
    const lines = formatHistory(ME, page).split("\n");
    assert.match(lines[0] ?? "", /^TIME\s+KIND\s+COUNTERPARTY\s+AMOUNT\s+ID$/);
    assert.match(lines[1] ?? "", /^2025-03-01T12:00:02\.000Z\s+transfer\s+tsr1bob\s+-5\s+t-2$/);
    assert.match(
      lines[2] ?? "",
      /^2025-03-01T12:00:01\.000Z\s+escrow-lock\s+escrow:e1\s+-1000\s+escrow:e1:lock$/,
    );
    assert.match(
      lines[3] ?? "",
      new RegExp(`^2025-03-01T12:00:00\\.000Z\\s+faucet\\s+faucet\\s+\\+${BIG}\\s+t-1$`),
    );
    assert.equal(lines[4], "next page token: tok-3");
    assert.equal(lines[5], "");
  });

  it("lines the columns up, amounts right-aligned", () => {
    const lines = formatHistory(ME, page).split("\n").slice(0, 4);
    const idColumn = lines.map((line) => line.lastIndexOf("  ") + 2);
    assert.equal(new Set(idColumn).size, 1, lines.join("\n"));
    // Right-aligned: every amount's last digit sits just before the gap to the ID column.
    const column = idColumn[0] ?? 0;
    for (const line of lines.slice(1)) assert.match(line.slice(0, column - 2), /\d$/);
  });

  it("prints the header only for an empty page, and no token on the last page", () => {
    const empty = create(GetTransactionHistoryResponseSchema, {});
    assert.equal(formatHistory(ME, empty), "TIME  KIND  COUNTERPARTY  AMOUNT  ID\n");
  });
});

describe("formatEscrow", () => {
  it("prints state, parties, amounts, times and the payment tree", () => {
    const text = formatEscrow(
      create(EscrowSchema, {
        escrowId: "e1",
        jobId: "job-7",
        payerAddress: ME,
        arbiterAddress: BOB,
        amount: "1000",
        state: EscrowState.RELEASED,
        releasedAmount: "990",
        refundedAmount: "10",
        createdAt: at("2025-03-01T12:00:00Z"),
        expiresAt: at("2025-03-02T12:00:00Z"),
        settledAt: at("2025-03-01T13:00:00Z"),
        paymentTree: create(PaymentTreeSchema, {
          computeAmount: "700",
          computeAddress: "tsr1node",
          gatewayAmount: "100",
          gatewayAddress: BOB,
          validatorAmount: "90",
          validatorAddresses: ["tsr1v1", "tsr1v2"],
          treasuryAmount: "100",
          treasuryAddress: "tsr1treasury",
        }),
      }),
    );
    assert.equal(
      text,
      [
        "escrow id: e1",
        "state: released",
        "job id: job-7",
        `payer: ${ME}`,
        `arbiter: ${BOB}`,
        "amount: 1000",
        "released: 990",
        "refunded: 10",
        "created at: 2025-03-01T12:00:00.000Z",
        "expires at: 2025-03-02T12:00:00.000Z",
        "settled at: 2025-03-01T13:00:00.000Z",
        "payment tree:",
        "  compute     700  tsr1node",
        "  gateway     100  tsr1bob",
        "  validators   90  tsr1v1, tsr1v2",
        "  treasury    100  tsr1treasury",
        "",
      ].join("\n"),
    );
  });

  it("a held escrow has no settled time; no tree says so", () => {
    const text = formatEscrow(
      create(EscrowSchema, { escrowId: "e2", state: EscrowState.HELD, amount: "5" }),
    );
    assert.match(text, /^state: held$/m);
    assert.doesNotMatch(text, /settled at/);
    assert.match(text, /\npayment tree: none\n$/);
  });
});

describe("formatJson", () => {
  it("prints protobuf JSON: amounts as strings, enums by name, zero values included", () => {
    const json = JSON.parse(
      formatJson(
        TransferResponseSchema,
        create(TransferResponseSchema, {
          transaction: {
            transactionId: "t-1",
            kind: TransactionKind.TRANSFER,
            debitAccount: ME,
            creditAccount: BOB,
            amount: BIG,
            createdAt: at("2025-03-01T12:00:00Z"),
          },
        }),
      ),
    );
    assert.equal(json.transaction.amount, BIG);
    assert.equal(json.transaction.kind, "TRANSACTION_KIND_TRANSFER");
    assert.equal(json.transaction.createdAt, "2025-03-01T12:00:00Z");
    assert.equal(json.transaction.memo, "");
  });
});
