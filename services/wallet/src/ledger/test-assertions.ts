// Test-only assertions shared by the ledger's test files.
import assert from "node:assert/strict";
import type { Store } from "@tessera/store";
import { WalletError, type WalletErrorKind, type WalletErrorReason } from "./errors.js";
import type { Ledger } from "./ledger.js";
import type { WalletTables } from "./tables.js";

/** Asserts that `promise` rejects with a WalletError of `kind` (and `reason` / message pattern). */
export async function rejectsWith(
  promise: Promise<unknown>,
  kind: WalletErrorKind,
  expected?: WalletErrorReason | RegExp,
): Promise<WalletError> {
  let caught: WalletError | undefined;
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof WalletError, `expected a WalletError, got ${String(error)}`);
    assert.equal(error.kind, kind, `${error.kind}: ${error.message}`);
    if (expected instanceof RegExp) assert.match(error.message, expected);
    else if (expected !== undefined) assert.equal(error.reason, expected, error.message);
    caught = error;
    return true;
  });
  return caught as unknown as WalletError;
}

/** Every row of every ledger table, in key order: equal snapshots mean nothing was written. */
export async function tablesSnapshot<DB extends WalletTables>(store: Store<DB>): Promise<string> {
  const db = (store as unknown as Store<WalletTables>).db;
  const [accounts, entries, escrows, stakes] = await Promise.all([
    db.selectFrom("wallet_account").selectAll().orderBy("account_id").execute(),
    db.selectFrom("wallet_transaction").selectAll().orderBy("seq").execute(),
    db.selectFrom("wallet_escrow").selectAll().orderBy("escrow_id").execute(),
    db.selectFrom("wallet_stake").selectAll().orderBy("stake_id").execute(),
  ]);
  return JSON.stringify({ accounts, entries, escrows, stakes }, (_key, value) =>
    typeof value === "number" ? String(value) : value,
  );
}

/** Asserts the ledger's invariants hold (every invariant, journal included). */
export async function assertSound(ledger: Ledger): Promise<void> {
  const report = await ledger.checkInvariants();
  assert.deepEqual(report.violations, [], report.violations.join("\n"));
}
