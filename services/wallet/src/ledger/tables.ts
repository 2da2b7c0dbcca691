/**
 * The tables the wallet's ledger owns, as Kysely sees them; {@link walletMigrations} creates them.
 *
 * Conventions (as in the registry): times are Unix milliseconds in `bigint` columns (PostgreSQL
 * hands them back as strings, SQLite as numbers: read them through `Number`); amounts are
 * fixed-width decimal text (`Money` of @tessera/store), exact and comparable in SQL on both
 * stores, with all arithmetic in TypeScript bigint inside the ledger's transactions; protobuf
 * messages are stored as base64 of their binary encoding.
 *
 * @see ./migrations.ts
 */
import type { Money } from "@tessera/store";
import type { ColumnType } from "kysely";

/** A 64-bit integer column: written as a number, read as a number (SQLite) or string (pg). */
export type Int64Column = ColumnType<number | string, number, number>;
/** A nullable 64-bit integer column. */
export type NullableInt64Column = ColumnType<
  number | string | null,
  number | null | undefined,
  number | null
>;

/**
 * One account: an address or a system account ("escrow:<id>", "stake:<id>", "faucet"). Like a
 * TigerBeetle account it keeps posted debits and credits, never a signed balance: the balance is
 * `credits - debits`, which no account but "faucet" may take below zero (a CHECK refuses it).
 */
export interface WalletAccountTable {
  account_id: string;
  debits: Money;
  credits: Money;
  created_at_ms: Int64Column;
}

/** One immutable ledger entry: `amount` moved from `debit_account` to `credit_account`. */
export interface WalletTransactionTable {
  transaction_id: string;
  /** Commit order: unique, increasing; the order of history pages. */
  seq: Int64Column;
  /** A tessera.wallet.v1.TransactionKind. */
  kind: number;
  debit_account: string;
  credit_account: string;
  amount: Money;
  reference_id: string;
  memo: string;
  created_at_ms: Int64Column;
  /** Fingerprint of the request that chose this id (transfers, faucet, slashes); else null. */
  request_hash: string | null;
}

/** One escrow. Its money sits in the account "escrow:<escrow_id>" while it is held. */
export interface WalletEscrowTable {
  escrow_id: string;
  job_id: string;
  payer_address: string;
  arbiter_address: string;
  amount: Money;
  expires_at_ms: Int64Column;
  /** A tessera.wallet.v1.EscrowState. */
  state: number;
  /** Base64 of the PaymentTree's binary encoding, or null when none was set. */
  payment_tree: string | null;
  created_at_ms: Int64Column;
  settled_at_ms: NullableInt64Column;
  released_amount: Money;
  refunded_amount: Money;
  /** Fingerprint of the CreateEscrow request. */
  request_hash: string;
  /** Fingerprint of the completion validation it was released with; null unless released. */
  release_hash: string | null;
}

/** One stake. Its money sits in the account "stake:<stake_id>" while it is locked. */
export interface WalletStakeTable {
  stake_id: string;
  staker_address: string;
  arbiter_address: string;
  /** Still locked. */
  amount: Money;
  slashed_amount: Money;
  /** A tessera.wallet.v1.StakeState. */
  state: number;
  created_at_ms: Int64Column;
  updated_at_ms: Int64Column;
  /** Fingerprint of the LockStake request. */
  request_hash: string;
}

/** Named counters; "transaction" is the last `seq` handed out. */
export interface WalletCounterTable {
  name: string;
  value: Int64Column;
}

/** Every table of the ledger. Add it to the wallet database's interface. */
export interface WalletTables {
  wallet_account: WalletAccountTable;
  wallet_transaction: WalletTransactionTable;
  wallet_escrow: WalletEscrowTable;
  wallet_stake: WalletStakeTable;
  wallet_counter: WalletCounterTable;
}
