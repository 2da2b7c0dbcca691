import { type CreateTableBuilder, sql } from "kysely";

/**
 * Digits of every stored amount. 10^78 - 1 is the largest value: above 2^256 (~1.16e77), so any
 * uint256 base-unit amount fits, and far above the 2^128 the wallet needs.
 */
export const MONEY_DIGITS = 78;

/** The largest amount a money column holds: 10^78 - 1. */
export const MONEY_MAX = 10n ** BigInt(MONEY_DIGITS) - 1n;

/**
 * A stored amount as it travels between code and database: exactly {@link MONEY_DIGITS} decimal
 * digits, zero-padded ("000…0042"). Make one with {@link toMoney}, read one with {@link fromMoney}.
 *
 * Why this encoding: the same bytes on SQLite and PostgreSQL, exact to the last unit (never a
 * float), and because every value has the same width, SQL comparisons (`=`, `<`, `>`, ORDER BY,
 * MIN/MAX, `ON CONFLICT … WHERE old < new`) give numeric answers on both stores. What it does not
 * give is SQL arithmetic: `balance + 1` or SUM would go through SQLite's 64-bit/float numbers. Do
 * arithmetic in TypeScript with bigint inside a transaction, locking the row with
 * `store.forUpdate(...)` (or using `isolation: "serializable"`). Values are unsigned; keep signed
 * ledger entries as a direction plus an amount.
 *
 * The alternative, NUMERIC(78,0) on PostgreSQL, would allow SQL arithmetic there but not on
 * SQLite, and the stores would hand back different strings for one value ("42" against a padded
 * one): code that passes on one store could then fail on the other.
 */
export type Money = string;

/**
 * Encodes a non-negative bigint for a money column. Throws RangeError when the value is negative
 * or above {@link MONEY_MAX} (a value no column could hold), TypeError when it is not a bigint.
 */
export function toMoney(value: bigint): Money {
  if (typeof value !== "bigint") {
    throw new TypeError(`money must be a bigint, got ${typeof value}`);
  }
  if (value < 0n || value > MONEY_MAX) {
    throw new RangeError(`money must be between 0 and 10^${MONEY_DIGITS} - 1`);
  }
  return value.toString().padStart(MONEY_DIGITS, "0");
}

/**
 * Decodes a money column value. Accepts the stored fixed-width form and, for convenience, any
 * plain decimal digit string in range; throws RangeError for anything else (signs, spaces,
 * exponents, empty strings, over-long values) rather than guessing.
 */
export function fromMoney(stored: Money): bigint {
  if (typeof stored !== "string" || !/^[0-9]{1,78}$/.test(stored)) {
    throw new RangeError("stored money must be 1 to 78 decimal digits");
  }
  return BigInt(stored);
}

/** Options for {@link moneyColumn}. */
export interface MoneyColumnOptions {
  /** Allow NULL. Defaults to false (NOT NULL). */
  readonly nullable?: boolean;
}

/**
 * Adds a money column to a `createTable` builder in a migration, the same on both stores:
 * `text` with a CHECK that admits only {@link MONEY_DIGITS}-digit strings, so a negative, short,
 * float or otherwise mis-encoded value is refused by the database itself.
 *
 * @example
 * await db.schema.createTable("account")
 *   .addColumn("id", "text", (c) => c.primaryKey())
 *   .$call(moneyColumn("balance"))
 *   .execute();
 */
export function moneyColumn(
  name: string,
  options: MoneyColumnOptions = {},
): <TB extends string, C extends string>(
  table: CreateTableBuilder<TB, C>,
) => CreateTableBuilder<TB, C> {
  const column = sql.ref(name);
  // length() and two-argument ltrim() exist with the same meaning in SQLite and PostgreSQL.
  const wellFormed = sql`length(${column}) = ${sql.lit(MONEY_DIGITS)} and ltrim(${column}, '0123456789') = ''`;
  return (table) =>
    table.addColumn(name, "text", (col) => {
      const checked = col.check(wellFormed);
      return options.nullable === true ? checked : checked.notNull();
    });
}
