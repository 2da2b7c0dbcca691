/**
 * The ledger's rows in memory (bigint amounts, numeric times), their database encoding
 * (./tables.ts) and their wire records (tessera.wallet.v1 TransactionRecord, Escrow, Stake).
 */
import { createHash } from "node:crypto";
import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type PaymentTree, PaymentTreeSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type Escrow,
  EscrowSchema,
  EscrowState,
  type Stake,
  StakeSchema,
  StakeState,
  type TransactionKind,
  type TransactionRecord,
  TransactionRecordSchema,
} from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { fromMoney, toMoney } from "@tessera/store";
import type { Insertable, Selectable } from "kysely";
import type { WalletEscrowTable, WalletStakeTable, WalletTransactionTable } from "./tables.js";

/** The Tessera protocol version this wallet speaks and stamps on its records. */
export const WALLET_PROTOCOL_VERSION: Readonly<{ major: number; minor: number; patch: number }> =
  Object.freeze({ major: 1, minor: 0, patch: 0 });

/** The system account that mints development money (genesis and faucet); it alone goes negative. */
export const FAUCET_ACCOUNT = "faucet";

/** The account holding escrow `escrowId`'s money. */
export function escrowAccount(escrowId: string): string {
  return `escrow:${escrowId}`;
}

/** The account holding stake `stakeId`'s money. */
export function stakeAccount(stakeId: string): string {
  return `stake:${stakeId}`;
}

/** One ledger entry in memory. */
export interface EntryRow {
  readonly transactionId: string;
  readonly kind: TransactionKind;
  readonly debitAccount: string;
  readonly creditAccount: string;
  readonly amount: bigint;
  readonly referenceId: string;
  readonly memo: string;
  readonly createdAtMs: number;
  readonly requestHash: string | null;
}

/** One escrow in memory. */
export interface EscrowRow {
  readonly escrowId: string;
  readonly jobId: string;
  readonly payerAddress: string;
  readonly arbiterAddress: string;
  readonly amount: bigint;
  readonly expiresAtMs: number;
  readonly state: EscrowState;
  /** Base64 of the payment tree's binary encoding, or undefined when the escrow has none. */
  readonly treeBase64: string | undefined;
  readonly createdAtMs: number;
  readonly settledAtMs: number | undefined;
  readonly releasedAmount: bigint;
  readonly refundedAmount: bigint;
  readonly requestHash: string;
  readonly releaseHash: string | undefined;
}

/** One stake in memory. */
export interface StakeRow {
  readonly stakeId: string;
  readonly stakerAddress: string;
  readonly arbiterAddress: string;
  readonly amount: bigint;
  readonly slashedAmount: bigint;
  readonly state: StakeState;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
  readonly requestHash: string;
}

/** SHA-256 hex of a request's fields: tells a retry (same fingerprint) from a reused id. */
export function fingerprint(fields: readonly unknown[]): string {
  return createHash("sha256")
    .update(
      JSON.stringify(fields, (_key, value) => (typeof value === "bigint" ? `${value}n` : value)),
    )
    .digest("hex");
}

/** SHA-256 hex of bytes (e.g. a completion validation's binary encoding). */
export function bytesFingerprint(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function entryFromDb(row: Selectable<WalletTransactionTable>): EntryRow {
  return {
    transactionId: row.transaction_id,
    kind: row.kind as TransactionKind,
    debitAccount: row.debit_account,
    creditAccount: row.credit_account,
    amount: fromMoney(row.amount),
    referenceId: row.reference_id,
    memo: row.memo,
    createdAtMs: Number(row.created_at_ms),
    requestHash: row.request_hash,
  };
}

export function entryToDb(entry: EntryRow, seq: number): Insertable<WalletTransactionTable> {
  return {
    transaction_id: entry.transactionId,
    seq,
    kind: entry.kind,
    debit_account: entry.debitAccount,
    credit_account: entry.creditAccount,
    amount: toMoney(entry.amount),
    reference_id: entry.referenceId,
    memo: entry.memo,
    created_at_ms: entry.createdAtMs,
    request_hash: entry.requestHash,
  };
}

export function entryToRecord(entry: EntryRow): TransactionRecord {
  return create(TransactionRecordSchema, {
    protocolVersion: WALLET_PROTOCOL_VERSION,
    transactionId: entry.transactionId,
    kind: entry.kind,
    debitAccount: entry.debitAccount,
    creditAccount: entry.creditAccount,
    amount: entry.amount.toString(),
    referenceId: entry.referenceId,
    memo: entry.memo,
    createdAt: timestampFromMs(entry.createdAtMs),
  });
}

export function escrowFromDb(row: Selectable<WalletEscrowTable>): EscrowRow {
  return {
    escrowId: row.escrow_id,
    jobId: row.job_id,
    payerAddress: row.payer_address,
    arbiterAddress: row.arbiter_address,
    amount: fromMoney(row.amount),
    expiresAtMs: Number(row.expires_at_ms),
    state: row.state as EscrowState,
    treeBase64: row.payment_tree ?? undefined,
    createdAtMs: Number(row.created_at_ms),
    settledAtMs: row.settled_at_ms === null ? undefined : Number(row.settled_at_ms),
    releasedAmount: fromMoney(row.released_amount),
    refundedAmount: fromMoney(row.refunded_amount),
    requestHash: row.request_hash,
    releaseHash: row.release_hash ?? undefined,
  };
}

export function escrowToDb(escrow: EscrowRow): Insertable<WalletEscrowTable> {
  return {
    escrow_id: escrow.escrowId,
    job_id: escrow.jobId,
    payer_address: escrow.payerAddress,
    arbiter_address: escrow.arbiterAddress,
    amount: toMoney(escrow.amount),
    expires_at_ms: escrow.expiresAtMs,
    state: escrow.state,
    payment_tree: escrow.treeBase64 ?? null,
    created_at_ms: escrow.createdAtMs,
    settled_at_ms: escrow.settledAtMs ?? null,
    released_amount: toMoney(escrow.releasedAmount),
    refunded_amount: toMoney(escrow.refundedAmount),
    request_hash: escrow.requestHash,
    release_hash: escrow.releaseHash ?? null,
  };
}

/** The escrow's payment tree, decoded; undefined when it has none. */
export function escrowTree(escrow: EscrowRow): PaymentTree | undefined {
  return escrow.treeBase64 === undefined
    ? undefined
    : fromBinary(PaymentTreeSchema, Buffer.from(escrow.treeBase64, "base64"));
}

/**
 * The wire record of `escrow`. `tree`, when the caller has it decoded already, saves decoding
 * the stored one (it must be the escrow's).
 */
export function escrowToRecord(escrow: EscrowRow, tree?: PaymentTree): Escrow {
  const paymentTree = tree ?? escrowTree(escrow);
  return create(EscrowSchema, {
    protocolVersion: WALLET_PROTOCOL_VERSION,
    escrowId: escrow.escrowId,
    jobId: escrow.jobId,
    payerAddress: escrow.payerAddress,
    amount: escrow.amount.toString(),
    arbiterAddress: escrow.arbiterAddress,
    expiresAt: timestampFromMs(escrow.expiresAtMs),
    state: escrow.state,
    ...(paymentTree === undefined ? {} : { paymentTree }),
    createdAt: timestampFromMs(escrow.createdAtMs),
    ...(escrow.settledAtMs === undefined ? {} : { settledAt: timestampFromMs(escrow.settledAtMs) }),
    releasedAmount: escrow.releasedAmount.toString(),
    refundedAmount: escrow.refundedAmount.toString(),
  });
}

export function stakeFromDb(row: Selectable<WalletStakeTable>): StakeRow {
  return {
    stakeId: row.stake_id,
    stakerAddress: row.staker_address,
    arbiterAddress: row.arbiter_address,
    amount: fromMoney(row.amount),
    slashedAmount: fromMoney(row.slashed_amount),
    state: row.state as StakeState,
    createdAtMs: Number(row.created_at_ms),
    updatedAtMs: Number(row.updated_at_ms),
    requestHash: row.request_hash,
  };
}

export function stakeToDb(stake: StakeRow): Insertable<WalletStakeTable> {
  return {
    stake_id: stake.stakeId,
    staker_address: stake.stakerAddress,
    arbiter_address: stake.arbiterAddress,
    amount: toMoney(stake.amount),
    slashed_amount: toMoney(stake.slashedAmount),
    state: stake.state,
    created_at_ms: stake.createdAtMs,
    updated_at_ms: stake.updatedAtMs,
    request_hash: stake.requestHash,
  };
}

export function stakeToRecord(stake: StakeRow): Stake {
  return create(StakeSchema, {
    protocolVersion: WALLET_PROTOCOL_VERSION,
    stakeId: stake.stakeId,
    stakerAddress: stake.stakerAddress,
    amount: stake.amount.toString(),
    slashedAmount: stake.slashedAmount.toString(),
    arbiterAddress: stake.arbiterAddress,
    state: stake.state,
    createdAt: timestampFromMs(stake.createdAtMs),
    updatedAt: timestampFromMs(stake.updatedAtMs),
  });
}

/** Whether an escrow in `state` still holds its money. */
export function isHeld(state: EscrowState): boolean {
  return state === EscrowState.HELD;
}

/** Whether a stake in `state` still holds money. */
export function isLocked(state: StakeState): boolean {
  return state === StakeState.LOCKED;
}
