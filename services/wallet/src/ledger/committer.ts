/**
 * Group commit for the ledger (TigerBeetle's batching, over SQL): operations submitted while a
 * batch is committing form the next batch, and a batch is ONE database transaction that
 *
 * 1. reads (on PostgreSQL: locks with `FOR UPDATE`, in key order) the escrows and stakes the
 *    operations name, the entries their ids may already have, then every account they may move
 *    money through;
 * 2. runs the operations in the order they were submitted against that state in memory
 *    (./operations.ts), each one all-or-nothing: a refused operation is rolled back in memory and
 *    rejects on its own, without failing the others;
 * 3. writes the new entries (numbered from the `transaction` counter, whose row lock also orders
 *    commits across wallet processes), the accounts, escrows and stakes that changed, and commits.
 *
 * Every promise settles only after its batch committed, so an acknowledged operation is durable.
 * If the transaction itself fails (database down, a bug), every operation of the batch rejects
 * with that error and none of them took effect.
 *
 * Two wallet processes on one PostgreSQL database: rows are locked in key order, so their batches
 * wait for each other instead of deadlocking (a deadlock is still retried by the store). When
 * both create the same new row (an account, escrow, stake or entry id), the later insert finds
 * the row and the whole batch runs again on the new state.
 */
import { AsyncResource } from "node:async_hooks";
import { TransactionKind } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { fromMoney, type Store, type StoreDialect, toMoney } from "@tessera/store";
import { sql, type Transaction } from "kysely";
import {
  ACCOUNT_TABLE,
  type BulkTable,
  ENTRY_TABLE,
  ESCROW_TABLE,
  insertNewRows,
  keyIn,
  STAKE_TABLE,
  updateRows,
} from "./bulk-sql.js";
import { WalletError } from "./errors.js";
import {
  accountsOf,
  applyOperation,
  collectRowNeeds,
  type Operation,
  type ResultOf,
  type RowNeeds,
} from "./operations.js";
import {
  type EntryRow,
  type EscrowRow,
  entryFromDb,
  entryToDb,
  escrowAccount,
  escrowFromDb,
  escrowToDb,
  type StakeRow,
  stakeFromDb,
  stakeToDb,
} from "./records.js";
import type { WalletTables } from "./tables.js";
import {
  type AccountTotals,
  type BatchChanges,
  GENESIS_REFERENCE,
  WorkingSet,
} from "./working-set.js";

/** Options of {@link createCommitter}. */
export interface CommitterOptions {
  readonly store: Store<WalletTables>;
  /** The wallet's clock; read once per batch. */
  readonly clock: () => Date;
  /** Most operations in one batch; the rest wait for the next. Defaults to 256. */
  readonly maxBatchOps?: number | undefined;
}

/** Runs ledger operations in group-committed batches; see the module comment. */
export interface Committer {
  /**
   * Queues `op` for the next batch and resolves with its result once that batch committed;
   * rejects with the WalletError that refused it, or with the batch's error. Operations take
   * effect in the order `submit` was called.
   */
  submit<O extends Operation>(op: O): Promise<ResultOf<O>>;
  /** Stops taking operations and waits for the queued ones. Safe to call twice. */
  close(): Promise<void>;
}

const DEFAULT_MAX_BATCH_OPS = 256;
/** Runs of one batch when concurrent wallet processes keep inserting the same new rows first. */
const MAX_RACE_RUNS = 10;
const DAY_MS = 86_400_000;

interface Pending {
  readonly op: Operation;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

type Outcome =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: unknown };

/** Internal: a concurrent process inserted a row this batch meant to create; run it again. */
class RaceLostError extends Error {
  constructor(what: string) {
    super(`a concurrent wallet process created the same ${what} first; the batch runs again`);
    this.name = "RaceLostError";
  }
}

/** A {@link Committer} over `options.store`, whose migrations must include walletMigrations. */
export function createCommitter(options: CommitterOptions): Committer {
  const { store, clock } = options;
  const maxBatchOps = Math.max(1, options.maxBatchOps ?? DEFAULT_MAX_BATCH_OPS);
  let queue: Pending[] = [];
  let draining: Promise<void> | undefined;
  let closed = false;

  async function drain(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.slice(0, maxBatchOps);
      queue = queue.slice(batch.length);
      await commit(batch);
      // Let the callbacks of the settled batch run first: what they submit joins the next batch.
      await new Promise<void>((resume) => setImmediate(resume));
    }
    draining = undefined;
  }
  // Batches run in the context the committer was made in, never in the first caller's.
  const startDrain = AsyncResource.bind(() => {
    draining = drain();
  });

  /** Runs `batch` as one transaction and settles every operation of it. Never rejects. */
  async function commit(batch: readonly Pending[]): Promise<void> {
    let outcomes: Outcome[] | undefined;
    for (let run = 1; outcomes === undefined; run += 1) {
      try {
        outcomes = await store.transaction((trx) =>
          runBatch(
            trx,
            store,
            batch.map((pending) => pending.op),
            clock().getTime(),
          ),
        );
      } catch (error) {
        if (error instanceof RaceLostError && run < MAX_RACE_RUNS) continue;
        for (const pending of batch) pending.reject(error);
        return;
      }
    }
    batch.forEach((pending, index) => {
      const outcome = outcomes?.[index];
      if (outcome?.ok === true) pending.resolve(outcome.value);
      else pending.reject(outcome?.error ?? new Error("bug: no outcome"));
    });
  }

  return {
    submit<O extends Operation>(op: O): Promise<ResultOf<O>> {
      if (closed) return Promise.reject(new WalletError("unavailable", "the ledger is closed"));
      return new Promise<ResultOf<O>>((resolve, reject) => {
        queue.push({ op, resolve: resolve as (value: unknown) => void, reject });
        if (draining === undefined) {
          // Started on the next tick, so operations submitted in this same turn share the batch.
          draining = Promise.resolve()
            .then(startDrain)
            .then(() => draining);
        }
      });
    },
    async close() {
      closed = true;
      while (draining !== undefined) await draining;
    },
  };
}

/** One batch: load, decide, write (see the module comment). Pure but for the database. */
async function runBatch(
  trx: Transaction<WalletTables>,
  store: Store<WalletTables>,
  ops: readonly Operation[],
  nowMs: number,
): Promise<Outcome[]> {
  const needs: RowNeeds = { escrowIds: [], stakeIds: [], entryIds: [], faucetAddresses: [] };
  for (const op of ops) collectRowNeeds(op, needs);

  const escrows = await loadEscrows(trx, store, unique(needs.escrowIds));
  const stakes = await loadStakes(trx, store, unique(needs.stakeIds));
  const entries = await loadEntries(trx, store.dialect, unique(needs.entryIds));
  const settled = ops.flatMap((op) =>
    op.type === "release" && escrows.get(op.escrowId)?.settledAtMs !== undefined
      ? [escrowAccount(op.escrowId)]
      : [],
  );
  const settlements = await loadEntriesDebiting(trx, store.dialect, unique(settled));
  const faucetToday = await loadFaucetToday(
    trx,
    store.dialect,
    unique(needs.faucetAddresses),
    nowMs,
  );

  const payers = ownersOf(
    escrows,
    (row) => row.payerAddress,
    ops.flatMap((op) => (op.type === "create_escrow" ? [[op.escrowId, op.payer] as const] : [])),
  );
  const stakers = ownersOf(
    stakes,
    (row) => row.stakerAddress,
    ops.flatMap((op) => (op.type === "lock_stake" ? [[op.stakeId, op.staker] as const] : [])),
  );
  const owners = {
    payers: (id: string) => payers.get(id) ?? [],
    stakers: (id: string) => stakers.get(id) ?? [],
  };
  const accountIds = new Set(ops.flatMap((op) => accountsOf(op, owners)));
  const accounts = await loadAccounts(trx, store, [...accountIds]);

  const ws = new WorkingSet(nowMs, accountIds, {
    accounts,
    escrows,
    stakes,
    entries: [...entries, ...settlements],
    faucetToday,
  });
  const outcomes = ops.map((op): Outcome => {
    const mark = ws.mark();
    try {
      return { ok: true, value: applyOperation(ws, op) };
    } catch (error) {
      ws.rollbackTo(mark);
      return { ok: false, error };
    }
  });
  await writeChanges(trx, store.dialect, ws.changes(), nowMs);
  return outcomes;
}

function ownersOf<T>(
  loaded: ReadonlyMap<string, T>,
  owner: (row: T) => string,
  created: ReadonlyArray<readonly [string, string]>,
): Map<string, string[]> {
  const owners = new Map<string, string[]>();
  const add = (id: string, address: string) => {
    const list = owners.get(id);
    if (list === undefined) owners.set(id, [address]);
    else if (!list.includes(address)) list.push(address);
  };
  for (const [id, row] of loaded) add(id, owner(row));
  for (const [id, address] of created) add(id, address);
  return owners;
}

/** The escrows with these ids, locked (PostgreSQL) in id order. */
async function loadEscrows(
  trx: Transaction<WalletTables>,
  store: Store<WalletTables>,
  ids: readonly string[],
): Promise<Map<string, EscrowRow>> {
  if (ids.length === 0) return new Map();
  const query = trx
    .selectFrom("wallet_escrow")
    .selectAll()
    .where(keyIn(store.dialect, "escrow_id", ids))
    .orderBy("escrow_id");
  const rows = await store.forUpdate(query).execute();
  return new Map(rows.map((row) => [row.escrow_id, escrowFromDb(row)]));
}

/** The stakes with these ids, locked (PostgreSQL) in id order. */
async function loadStakes(
  trx: Transaction<WalletTables>,
  store: Store<WalletTables>,
  ids: readonly string[],
): Promise<Map<string, StakeRow>> {
  if (ids.length === 0) return new Map();
  const query = trx
    .selectFrom("wallet_stake")
    .selectAll()
    .where(keyIn(store.dialect, "stake_id", ids))
    .orderBy("stake_id");
  const rows = await store.forUpdate(query).execute();
  return new Map(rows.map((row) => [row.stake_id, stakeFromDb(row)]));
}

/** The accounts with these ids that exist, locked (PostgreSQL) in id order. */
async function loadAccounts(
  trx: Transaction<WalletTables>,
  store: Store<WalletTables>,
  ids: readonly string[],
): Promise<Map<string, AccountTotals>> {
  if (ids.length === 0) return new Map();
  const query = trx
    .selectFrom("wallet_account")
    .select(["account_id", "debits", "credits"])
    .where(keyIn(store.dialect, "account_id", ids))
    .orderBy("account_id");
  const rows = await store.forUpdate(query).execute();
  return new Map(
    rows.map((row) => [
      row.account_id,
      { debits: fromMoney(row.debits), credits: fromMoney(row.credits) },
    ]),
  );
}

/** The entries with these ids that exist. */
async function loadEntries(
  trx: Transaction<WalletTables>,
  dialect: StoreDialect,
  ids: readonly string[],
): Promise<EntryRow[]> {
  if (ids.length === 0) return [];
  const rows = await trx
    .selectFrom("wallet_transaction")
    .selectAll()
    .where(keyIn(dialect, "transaction_id", ids))
    .execute();
  return rows.map(entryFromDb);
}

/** Entries debiting `accounts`, in commit order (a released escrow's payouts, for replays). */
async function loadEntriesDebiting(
  trx: Transaction<WalletTables>,
  dialect: StoreDialect,
  accounts: readonly string[],
): Promise<EntryRow[]> {
  if (accounts.length === 0) return [];
  const rows = await trx
    .selectFrom("wallet_transaction")
    .selectAll()
    .where(keyIn(dialect, "debit_account", accounts))
    .orderBy("seq")
    .execute();
  return rows.map(entryFromDb);
}

/** What the faucet credited each address since the start of the UTC day (genesis excluded). */
async function loadFaucetToday(
  trx: Transaction<WalletTables>,
  dialect: StoreDialect,
  addresses: readonly string[],
  nowMs: number,
): Promise<Map<string, bigint>> {
  const totals = new Map<string, bigint>();
  if (addresses.length === 0) return totals;
  const rows = await trx
    .selectFrom("wallet_transaction")
    .select(["credit_account", "amount"])
    .where("kind", "=", TransactionKind.FAUCET)
    .where(keyIn(dialect, "credit_account", addresses))
    .where("created_at_ms", ">=", Math.floor(nowMs / DAY_MS) * DAY_MS)
    .where("reference_id", "<>", GENESIS_REFERENCE)
    .execute();
  for (const row of rows) {
    totals.set(row.credit_account, (totals.get(row.credit_account) ?? 0n) + fromMoney(row.amount));
  }
  return totals;
}

async function writeChanges(
  trx: Transaction<WalletTables>,
  dialect: StoreDialect,
  changes: BatchChanges,
  nowMs: number,
): Promise<void> {
  const { entries } = changes;
  if (entries.length > 0) {
    const counter = await trx
      .updateTable("wallet_counter")
      .set({ value: sql<number>`value + ${entries.length}` })
      .where("name", "=", "transaction")
      .returning("value")
      .executeTakeFirstOrThrow();
    const firstSeq = Number(counter.value) - entries.length + 1;
    const rows = entries.map((entry, index) => entryToDb(entry, firstSeq + index));
    await insertNew(trx, dialect, ENTRY_TABLE, rows, "entry id");
  }

  const accountRow = ([id, totals]: readonly [string, AccountTotals]) => ({
    account_id: id,
    debits: toMoney(totals.debits),
    credits: toMoney(totals.credits),
    created_at_ms: nowMs,
  });
  await insertNew(trx, dialect, ACCOUNT_TABLE, changes.freshAccounts.map(accountRow), "account");
  await updateRows(trx, dialect, ACCOUNT_TABLE, changes.changedAccounts.map(accountRow));

  await insertNew(trx, dialect, ESCROW_TABLE, changes.escrows.fresh.map(escrowToDb), "escrow");
  // The tree never changes: leave it out of the row (only SQLite's upsert sends every column).
  await updateRows(
    trx,
    dialect,
    ESCROW_TABLE,
    changes.escrows.changed.map((row) => ({ ...escrowToDb(row), payment_tree: null })),
  );

  await insertNew(trx, dialect, STAKE_TABLE, changes.stakes.fresh.map(stakeToDb), "stake");
  await updateRows(trx, dialect, STAKE_TABLE, changes.stakes.changed.map(stakeToDb));
}

/**
 * Inserts rows this batch found absent. One that another process inserted meanwhile is left
 * alone, and the batch runs again ({@link RaceLostError}) on the state that includes it.
 */
async function insertNew(
  trx: Transaction<WalletTables>,
  dialect: StoreDialect,
  spec: BulkTable,
  rows: ReadonlyArray<Readonly<Record<string, unknown>>>,
  what: string,
): Promise<void> {
  if (rows.length === 0) return;
  const inserted = await insertNewRows(trx, dialect, spec, rows);
  if (inserted !== rows.length) throw new RaceLostError(what);
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}
