/**
 * Set-at-a-time SQL for the committer, one code path per store where they differ:
 *
 * - PostgreSQL gets every list as ONE array parameter (`= any($1::text[])`, `unnest(...)`), so a
 *   statement's text does not grow with the batch: the server parses and plans a short statement
 *   instead of one with thousands of placeholders (a batch of 64 escrow releases writes ~450 rows).
 * - SQLite gets every list as ONE JSON text parameter read with `json_each`, for the same reason:
 *   better-sqlite3 prepares every statement it runs, and preparing (and binding) a statement
 *   with thousands of placeholders cost more than the work itself.
 *
 * Both paths run under the same tests (every ledger suite runs on both stores).
 */
import type { StoreDialect } from "@tessera/store";
import { type Expression, type Kysely, type RawBuilder, type SqlBool, sql } from "kysely";
import type { WalletTables } from "./tables.js";

/** A column as the bulk statements need it: its name and its PostgreSQL array element type. */
export interface BulkColumn {
  readonly name: string;
  readonly pgType: "text" | "bigint" | "integer";
}

/** A table's columns for bulk writes, its key, and the columns an update changes. */
export interface BulkTable {
  readonly table: keyof WalletTables & string;
  readonly key: string;
  readonly columns: readonly BulkColumn[];
  /** Columns {@link updateRows} writes; the others never change after the insert. */
  readonly updated: readonly string[];
}

const text = (name: string): BulkColumn => ({ name, pgType: "text" });
const int64 = (name: string): BulkColumn => ({ name, pgType: "bigint" });
const int32 = (name: string): BulkColumn => ({ name, pgType: "integer" });

export const ENTRY_TABLE: BulkTable = {
  table: "wallet_transaction",
  key: "transaction_id",
  columns: [
    text("transaction_id"),
    int64("seq"),
    int32("kind"),
    text("debit_account"),
    text("credit_account"),
    text("amount"),
    text("reference_id"),
    text("memo"),
    int64("created_at_ms"),
    text("request_hash"),
  ],
  updated: [],
};

export const ACCOUNT_TABLE: BulkTable = {
  table: "wallet_account",
  key: "account_id",
  columns: [text("account_id"), text("debits"), text("credits"), int64("created_at_ms")],
  updated: ["debits", "credits"],
};

export const ESCROW_TABLE: BulkTable = {
  table: "wallet_escrow",
  key: "escrow_id",
  columns: [
    text("escrow_id"),
    text("job_id"),
    text("payer_address"),
    text("arbiter_address"),
    text("amount"),
    int64("expires_at_ms"),
    int32("state"),
    text("payment_tree"),
    int64("created_at_ms"),
    int64("settled_at_ms"),
    text("released_amount"),
    text("refunded_amount"),
    text("request_hash"),
    text("release_hash"),
  ],
  updated: ["state", "settled_at_ms", "released_amount", "refunded_amount", "release_hash"],
};

export const STAKE_TABLE: BulkTable = {
  table: "wallet_stake",
  key: "stake_id",
  columns: [
    text("stake_id"),
    text("staker_address"),
    text("arbiter_address"),
    text("amount"),
    text("slashed_amount"),
    int32("state"),
    int64("created_at_ms"),
    int64("updated_at_ms"),
    text("request_hash"),
  ],
  updated: ["amount", "slashed_amount", "state", "updated_at_ms"],
};

/** `column` is one of `keys` (non-empty), as a WHERE condition. */
export function keyIn(
  dialect: StoreDialect,
  column: string,
  keys: readonly string[],
): Expression<SqlBool> {
  return dialect === "postgres"
    ? sql<SqlBool>`${sql.ref(column)} = any(${[...keys]}::text[])`
    : sql<SqlBool>`${sql.ref(column)} in (select value from json_each(${JSON.stringify(keys)}))`;
}

/**
 * Inserts `rows` unless their key exists, and returns how many were inserted (a row whose key
 * exists, inserted meanwhile by another process, is left alone and not counted).
 */
export async function insertNewRows(
  db: Kysely<WalletTables>,
  dialect: StoreDialect,
  spec: BulkTable,
  rows: ReadonlyArray<Readonly<Record<string, unknown>>>,
): Promise<number> {
  if (rows.length === 0) return 0;
  // SQLite needs a WHERE on INSERT … SELECT … ON CONFLICT to parse it (not a join's ON).
  const result = await sql<
    Record<string, unknown>
  >`insert into ${sql.table(spec.table)} (${columnList(spec.columns)}) ${rowSource(dialect, spec.columns, rows)} where true on conflict (${sql.ref(spec.key)}) do nothing returning ${sql.ref(spec.key)}`.execute(
    db,
  );
  return result.rows.length;
}

/**
 * Writes the {@link BulkTable.updated} columns of `rows`, whose keys exist and are locked by the
 * running transaction: one UPDATE … FROM over the rows.
 */
export async function updateRows(
  db: Kysely<WalletTables>,
  dialect: StoreDialect,
  spec: BulkTable,
  rows: ReadonlyArray<Readonly<Record<string, unknown>>>,
): Promise<void> {
  if (rows.length === 0) return;
  const columns = spec.columns.filter(
    (column) => column.name === spec.key || spec.updated.includes(column.name),
  );
  const assignments = sql.join(
    spec.updated.map((name) => sql`${sql.ref(name)} = u.${sql.ref(name)}`),
  );
  await sql`update ${sql.table(spec.table)} as t set ${assignments} from (${rowSource(dialect, columns, rows)}) as u where t.${sql.ref(spec.key)} = u.${sql.ref(spec.key)}`.execute(
    db,
  );
}

function columnList(columns: readonly BulkColumn[]): RawBuilder<unknown> {
  return sql.join(columns.map((column) => sql.ref(column.name)));
}

/**
 * The rows as a query with one column per entry of `columns`, named like it:
 * `select * from unnest($1::text[], …) as r(…)` on PostgreSQL (one array parameter per column),
 * `select value ->> 0 as …, … from json_each($1)` on SQLite (one JSON parameter, the rows as
 * arrays).
 */
function rowSource(
  dialect: StoreDialect,
  columns: readonly BulkColumn[],
  rows: ReadonlyArray<Readonly<Record<string, unknown>>>,
): RawBuilder<unknown> {
  if (dialect === "postgres") {
    const arrays = columns.map(
      (column) => sql`${rows.map((row) => row[column.name] ?? null)}::${sql.raw(column.pgType)}[]`,
    );
    return sql`select * from unnest(${sql.join(arrays)}) as r(${columnList(columns)})`;
  }
  const json = JSON.stringify(rows.map((row) => columns.map((column) => row[column.name] ?? null)));
  const fields = columns.map(
    (column, index) => sql`value ->> ${sql.lit(index)} as ${sql.ref(column.name)}`,
  );
  return sql`select ${sql.join(fields)} from json_each(${json})`;
}
