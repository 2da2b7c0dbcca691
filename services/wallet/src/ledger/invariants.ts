/**
 * The ledger's invariants, checked over one consistent snapshot of the database:
 *
 * 1. No account but "faucet" has a negative balance (credits < debits).
 * 2. Double entry: the debits of all accounts add up to their credits.
 * 3. Supply: the balances of all accounts but "faucet" add up to what the faucet minted (minus
 *    its balance), so money is neither lost nor invented.
 * 4. Escrows: each escrow's account holds its amount while HELD and nothing once settled, and a
 *    settled escrow's released and refunded amounts add up to its amount; so the escrow accounts
 *    together hold exactly the open escrows.
 * 5. Stakes: each stake's account holds its remaining amount while LOCKED and nothing otherwise.
 * 6. With `journal` (default): each account's debits and credits equal the sums of its entries,
 *    every entry moves a positive amount, and what the faucet minted equals the FAUCET entries
 *    (genesis allocations plus faucet credits).
 */
import {
  EscrowState,
  StakeState,
  TransactionKind,
} from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { fromMoney, type Store } from "@tessera/store";
import { escrowAccount, FAUCET_ACCOUNT, stakeAccount } from "./records.js";
import type { WalletTables } from "./tables.js";

/** Options of {@link checkLedgerInvariants}. */
export interface InvariantOptions {
  /** Also check every account against the journal of entries (reads every entry). Default true. */
  readonly journal?: boolean | undefined;
}

/** What {@link checkLedgerInvariants} found. */
export interface InvariantReport {
  /** One line per broken invariant; empty when the ledger is sound. */
  readonly violations: readonly string[];
  /** Money in existence: the balances of every account but "faucet". */
  readonly supply: bigint;
  /** Money held in escrows. */
  readonly escrowed: bigint;
  /** Money locked in stakes. */
  readonly staked: bigint;
  /** Accounts read. */
  readonly accounts: number;
  /** Entries read (0 without `journal`). */
  readonly entries: number;
}

/** Checks the invariants of the module comment. Reads only; never changes the ledger. */
export async function checkLedgerInvariants(
  store: Store<WalletTables>,
  options: InvariantOptions = {},
): Promise<InvariantReport> {
  const journal = options.journal ?? true;
  // Serializable on PostgreSQL: every read below sees one snapshot of the ledger.
  return store.transaction(
    async (trx) => {
      const violations: string[] = [];
      const accounts = new Map<string, { debits: bigint; credits: bigint }>();
      for (const row of await trx.selectFrom("wallet_account").selectAll().execute()) {
        accounts.set(row.account_id, {
          debits: fromMoney(row.debits),
          credits: fromMoney(row.credits),
        });
      }
      const balanceOf = (id: string) => {
        const totals = accounts.get(id);
        return totals === undefined ? 0n : totals.credits - totals.debits;
      };

      let debits = 0n;
      let credits = 0n;
      let supply = 0n;
      for (const [id, totals] of accounts) {
        debits += totals.debits;
        credits += totals.credits;
        const balance = totals.credits - totals.debits;
        if (id === FAUCET_ACCOUNT) continue;
        if (balance < 0n) violations.push(`account ${id} has a negative balance ${balance}`);
        supply += balance;
      }
      if (debits !== credits) {
        violations.push(`debits ${debits} differ from credits ${credits}`);
      }
      const minted = -balanceOf(FAUCET_ACCOUNT);
      if (supply !== minted) {
        violations.push(`the supply ${supply} differs from what the faucet minted, ${minted}`);
      }

      let escrowed = 0n;
      let escrowAccounts = 0n;
      const escrowIds = new Set<string>();
      for (const row of await trx.selectFrom("wallet_escrow").selectAll().execute()) {
        escrowIds.add(row.escrow_id);
        const amount = fromMoney(row.amount);
        const released = fromMoney(row.released_amount);
        const refunded = fromMoney(row.refunded_amount);
        const held = row.state === EscrowState.HELD;
        const balance = balanceOf(escrowAccount(row.escrow_id));
        escrowAccounts += balance;
        if (held) escrowed += amount;
        if (balance !== (held ? amount : 0n)) {
          violations.push(
            `escrow ${row.escrow_id} (state ${row.state}, amount ${amount}) has ${balance} in its account`,
          );
        }
        if (held ? released + refunded !== 0n : released + refunded !== amount) {
          violations.push(
            `escrow ${row.escrow_id} released ${released} and refunded ${refunded} of ${amount}`,
          );
        }
      }
      if (escrowAccounts !== escrowed) {
        violations.push(`escrow accounts hold ${escrowAccounts}, open escrows ${escrowed}`);
      }

      let staked = 0n;
      let stakeAccounts = 0n;
      const stakeIds = new Set<string>();
      for (const row of await trx.selectFrom("wallet_stake").selectAll().execute()) {
        stakeIds.add(row.stake_id);
        const amount = fromMoney(row.amount);
        const locked = row.state === StakeState.LOCKED;
        const balance = balanceOf(stakeAccount(row.stake_id));
        stakeAccounts += balance;
        if (locked) staked += amount;
        if (balance !== (locked ? amount : 0n)) {
          violations.push(
            `stake ${row.stake_id} (state ${row.state}, amount ${amount}) has ${balance} in its account`,
          );
        }
      }
      if (stakeAccounts !== staked) {
        violations.push(`stake accounts hold ${stakeAccounts}, locked stakes ${staked}`);
      }
      for (const id of accounts.keys()) {
        if (id.startsWith("escrow:") && !escrowIds.has(id.slice("escrow:".length))) {
          violations.push(`account ${id} belongs to no escrow`);
        }
        if (id.startsWith("stake:") && !stakeIds.has(id.slice("stake:".length))) {
          violations.push(`account ${id} belongs to no stake`);
        }
      }

      let entries = 0;
      if (journal) {
        const sums = new Map<string, { debits: bigint; credits: bigint }>();
        const sumOf = (id: string) => {
          let sum = sums.get(id);
          if (sum === undefined) {
            sum = { debits: 0n, credits: 0n };
            sums.set(id, sum);
          }
          return sum;
        };
        let faucetEntries = 0n;
        const rows = await trx
          .selectFrom("wallet_transaction")
          .select(["transaction_id", "kind", "debit_account", "credit_account", "amount"])
          .execute();
        entries = rows.length;
        for (const row of rows) {
          const amount = fromMoney(row.amount);
          if (amount <= 0n) violations.push(`entry ${row.transaction_id} moves ${amount}`);
          sumOf(row.debit_account).debits += amount;
          sumOf(row.credit_account).credits += amount;
          if (row.kind === TransactionKind.FAUCET) faucetEntries += amount;
        }
        for (const id of new Set([...accounts.keys(), ...sums.keys()])) {
          const totals = accounts.get(id) ?? { debits: 0n, credits: 0n };
          const sum = sums.get(id) ?? { debits: 0n, credits: 0n };
          if (totals.debits !== sum.debits || totals.credits !== sum.credits) {
            violations.push(
              `account ${id} has debits ${totals.debits} / credits ${totals.credits}, its entries ${sum.debits} / ${sum.credits}`,
            );
          }
        }
        if (faucetEntries !== minted) {
          violations.push(`FAUCET entries add up to ${faucetEntries}, the faucet minted ${minted}`);
        }
      }
      return { violations, supply, escrowed, staked, accounts: accounts.size, entries };
    },
    { isolation: "serializable" },
  );
}
