/**
 * The rows one batch of operations reads and changes, in memory. The committer loads (and on
 * PostgreSQL locks) every row the batch may touch, the operations run against this set one after
 * another, and the committer writes what changed, all in one database transaction.
 *
 * Every change goes through a method here and is journaled, so an operation that fails half-way
 * is undone exactly ({@link WorkingSet.rollbackTo}) and the next operation of the batch sees the
 * state as if it had never run.
 */
import { WalletError } from "./errors.js";
import { type EntryRow, type EscrowRow, FAUCET_ACCOUNT, type StakeRow } from "./records.js";

/** An account's posted totals in memory. */
export interface AccountTotals {
  debits: bigint;
  credits: bigint;
}

/** A row of the set and whether it is new (absent from the database when the batch began). */
interface Tracked<T> {
  readonly row: T;
  readonly fresh: boolean;
}

/** Everything the committer loaded for a batch. */
export interface LoadedRows {
  readonly accounts: ReadonlyMap<string, AccountTotals>;
  readonly escrows: ReadonlyMap<string, EscrowRow>;
  readonly stakes: ReadonlyMap<string, StakeRow>;
  /** Entries looked up by id, and the settlement entries of settled escrows. */
  readonly entries: readonly EntryRow[];
  /** Faucet credits of the current UTC day, by address (genesis excluded). */
  readonly faucetToday: ReadonlyMap<string, bigint>;
}

/** The in-memory state of one batch; see the module comment. */
export class WorkingSet {
  /** The batch's clock reading; every operation of the batch uses it. */
  readonly nowMs: number;
  readonly #accountIds: ReadonlySet<string>;
  readonly #accounts = new Map<string, AccountTotals>();
  readonly #existingAccounts = new Set<string>();
  readonly #dirtyAccounts = new Set<string>();
  readonly #escrows = new Map<string, Tracked<EscrowRow>>();
  readonly #dirtyEscrows = new Set<string>();
  readonly #stakes = new Map<string, Tracked<StakeRow>>();
  readonly #dirtyStakes = new Set<string>();
  readonly #entries = new Map<string, EntryRow>();
  readonly #entriesByDebit = new Map<string, EntryRow[]>();
  readonly #newEntries: EntryRow[] = [];
  readonly #faucetToday: Map<string, bigint>;
  readonly #journal: Array<() => void> = [];

  /**
   * @param accountIds every account the batch may touch: those absent from `loaded.accounts`
   *   start at zero and are created if an operation moves money through them.
   */
  constructor(nowMs: number, accountIds: ReadonlySet<string>, loaded: LoadedRows) {
    this.nowMs = nowMs;
    this.#accountIds = accountIds;
    for (const [id, totals] of loaded.accounts) {
      this.#accounts.set(id, { ...totals });
      this.#existingAccounts.add(id);
    }
    for (const [id, row] of loaded.escrows) this.#escrows.set(id, { row, fresh: false });
    for (const [id, row] of loaded.stakes) this.#stakes.set(id, { row, fresh: false });
    for (const entry of loaded.entries) this.#remember(entry);
    this.#faucetToday = new Map(loaded.faucetToday);
  }

  /** A journal position to roll back to. */
  mark(): number {
    return this.#journal.length;
  }

  /** Undoes every change made since `mark`, newest first. */
  rollbackTo(mark: number): void {
    while (this.#journal.length > mark) this.#journal.pop()?.();
  }

  /** The entry with this id, committed or made by this batch. */
  entry(transactionId: string): EntryRow | undefined {
    return this.#entries.get(transactionId);
  }

  /** Entries debiting `account` that were loaded or made by this batch, oldest first. */
  entriesDebiting(account: string): readonly EntryRow[] {
    return this.#entriesByDebit.get(account) ?? [];
  }

  escrow(escrowId: string): EscrowRow | undefined {
    return this.#escrows.get(escrowId)?.row;
  }

  stake(stakeId: string): StakeRow | undefined {
    return this.#stakes.get(stakeId)?.row;
  }

  /** `credits - debits` of an account the batch loaded. */
  balance(account: string): bigint {
    const totals = this.#totals(account);
    return totals.credits - totals.debits;
  }

  /** Faucet credits to `address` since the start of the current UTC day. */
  faucetToday(address: string): bigint {
    return this.#faucetToday.get(address) ?? 0n;
  }

  /**
   * Records `entry` and moves its amount.
   * @throws WalletError failed_precondition (insufficient_funds) when the debit account is not
   * "faucet" and holds less than the amount; nothing changes then.
   */
  post(entry: EntryRow): void {
    if (entry.amount <= 0n) throw new Error(`bug: entry ${entry.transactionId} moves no money`);
    if (this.#entries.has(entry.transactionId)) {
      throw new Error(`bug: entry ${entry.transactionId} posted twice`);
    }
    const debit = this.#totals(entry.debitAccount);
    const credit = this.#totals(entry.creditAccount);
    const available = debit.credits - debit.debits;
    if (entry.debitAccount !== FAUCET_ACCOUNT && available < entry.amount) {
      throw new WalletError(
        "failed_precondition",
        `insufficient funds: ${entry.debitAccount} has ${available} available, ${entry.amount} needed`,
        { reason: "insufficient_funds" },
      );
    }
    this.#touchAccount(entry.debitAccount, debit);
    this.#touchAccount(entry.creditAccount, credit);
    debit.debits += entry.amount;
    credit.credits += entry.amount;
    this.#remember(entry);
    this.#newEntries.push(entry);
    this.#journal.push(() => {
      debit.debits -= entry.amount;
      credit.credits -= entry.amount;
      this.#forget(entry);
      this.#newEntries.pop();
    });
    if (entry.debitAccount === FAUCET_ACCOUNT && entry.referenceId !== GENESIS_REFERENCE) {
      const before = this.#faucetToday.get(entry.creditAccount);
      this.#faucetToday.set(entry.creditAccount, (before ?? 0n) + entry.amount);
      this.#journal.push(() => {
        if (before === undefined) this.#faucetToday.delete(entry.creditAccount);
        else this.#faucetToday.set(entry.creditAccount, before);
      });
    }
  }

  /** Stores a new or changed escrow. */
  putEscrow(row: EscrowRow): void {
    this.#put(this.#escrows, this.#dirtyEscrows, row.escrowId, row);
  }

  /** Stores a new or changed stake. */
  putStake(row: StakeRow): void {
    this.#put(this.#stakes, this.#dirtyStakes, row.stakeId, row);
  }

  /** What the batch changed, for the committer to write. */
  changes(): BatchChanges {
    const pick = <T>(rows: Map<string, Tracked<T>>, dirty: Set<string>) => {
      const fresh: T[] = [];
      const changed: T[] = [];
      for (const id of dirty) {
        const tracked = rows.get(id);
        if (tracked !== undefined) (tracked.fresh ? fresh : changed).push(tracked.row);
      }
      return { fresh, changed };
    };
    const freshAccounts: Array<[string, AccountTotals]> = [];
    const changedAccounts: Array<[string, AccountTotals]> = [];
    for (const id of this.#dirtyAccounts) {
      const totals = this.#accounts.get(id);
      if (totals === undefined) continue;
      (this.#existingAccounts.has(id) ? changedAccounts : freshAccounts).push([id, totals]);
    }
    return {
      entries: [...this.#newEntries],
      freshAccounts,
      changedAccounts,
      escrows: pick(this.#escrows, this.#dirtyEscrows),
      stakes: pick(this.#stakes, this.#dirtyStakes),
    };
  }

  #totals(account: string): AccountTotals {
    let totals = this.#accounts.get(account);
    if (totals === undefined) {
      if (!this.#accountIds.has(account)) {
        throw new Error(`bug: account ${account} was not loaded for this batch`);
      }
      totals = { debits: 0n, credits: 0n };
      this.#accounts.set(account, totals);
    }
    return totals;
  }

  #touchAccount(account: string, totals: AccountTotals): void {
    if (this.#dirtyAccounts.has(account)) return;
    this.#dirtyAccounts.add(account);
    this.#journal.push(() => {
      this.#dirtyAccounts.delete(account);
      if (!this.#existingAccounts.has(account) && totals.debits === 0n && totals.credits === 0n) {
        this.#accounts.delete(account);
      }
    });
  }

  #put<T>(rows: Map<string, Tracked<T>>, dirty: Set<string>, id: string, row: T): void {
    const before = rows.get(id);
    const wasDirty = dirty.has(id);
    rows.set(id, { row, fresh: before === undefined ? true : before.fresh });
    dirty.add(id);
    this.#journal.push(() => {
      if (before === undefined) rows.delete(id);
      else rows.set(id, before);
      if (!wasDirty) dirty.delete(id);
    });
  }

  #remember(entry: EntryRow): void {
    this.#entries.set(entry.transactionId, entry);
    const list = this.#entriesByDebit.get(entry.debitAccount);
    if (list === undefined) this.#entriesByDebit.set(entry.debitAccount, [entry]);
    else list.push(entry);
  }

  #forget(entry: EntryRow): void {
    this.#entries.delete(entry.transactionId);
    this.#entriesByDebit.get(entry.debitAccount)?.pop();
  }
}

/** The reference id of genesis entries; the faucet's daily limit does not count them. */
export const GENESIS_REFERENCE = "genesis";

/** What one batch changed. */
export interface BatchChanges {
  /** New entries, in the order they were posted. */
  readonly entries: readonly EntryRow[];
  /** Accounts the batch created, with their totals. */
  readonly freshAccounts: ReadonlyArray<readonly [string, AccountTotals]>;
  /** Accounts that existed and changed, with their new totals. */
  readonly changedAccounts: ReadonlyArray<readonly [string, AccountTotals]>;
  readonly escrows: {
    readonly fresh: readonly EscrowRow[];
    readonly changed: readonly EscrowRow[];
  };
  readonly stakes: { readonly fresh: readonly StakeRow[]; readonly changed: readonly StakeRow[] };
}
