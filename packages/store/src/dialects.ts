import type { AsyncLocalStorage } from "node:async_hooks";
import type BetterSqlite3 from "better-sqlite3";
import {
  type DialectAdapter,
  type Driver,
  PostgresDialect,
  SqliteAdapter,
  SqliteDialect,
} from "kysely";
import type { Pool } from "pg";
import { GuardedDriver } from "./guarded-driver.js";

/** SQLite can roll back DDL, so all pending migrations run in one transaction, as on PostgreSQL. */
class TransactionalDdlSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

/**
 * Kysely's SQLite dialect with the store's rules: every transaction starts with
 * `BEGIN IMMEDIATE` (it takes the write lock up front, so a transaction never fails half-way on
 * SQLITE_BUSY when it first writes, and `forUpdate` needs no SQL of its own), queries from inside
 * a transaction callback that bypass `trx` fail fast, and closing waits for the running work.
 * Kysely already queues every user of the one connection behind a mutex: concurrent transactions
 * run one after another, never interleaved.
 */
class StoreSqliteDialect extends SqliteDialect {
  readonly #insideTransaction: AsyncLocalStorage<object>;

  constructor(database: BetterSqlite3.Database, insideTransaction: AsyncLocalStorage<object>) {
    super({ database });
    this.#insideTransaction = insideTransaction;
  }

  override createDriver(): Driver {
    return new GuardedDriver(super.createDriver(), {
      insideTransaction: this.#insideTransaction,
      beginSql: "begin immediate",
      drainOnDestroy: true,
    });
  }

  override createAdapter(): DialectAdapter {
    return new TransactionalDdlSqliteAdapter();
  }
}

/** Kysely's PostgreSQL dialect over a pg Pool, with the same transaction guard as SQLite. */
class StorePostgresDialect extends PostgresDialect {
  readonly #insideTransaction: AsyncLocalStorage<object>;

  constructor(pool: Pool, insideTransaction: AsyncLocalStorage<object>) {
    super({ pool });
    this.#insideTransaction = insideTransaction;
  }

  override createDriver(): Driver {
    return new GuardedDriver(super.createDriver(), { insideTransaction: this.#insideTransaction });
  }
}

/** The Kysely dialect for an open better-sqlite3 database (which the dialect then owns). */
export function createSqliteDialect(
  database: BetterSqlite3.Database,
  insideTransaction: AsyncLocalStorage<object>,
): SqliteDialect {
  return new StoreSqliteDialect(database, insideTransaction);
}

/** The Kysely dialect for a pg Pool (which the dialect then owns and ends on destroy). */
export function createPostgresDialect(
  pool: Pool,
  insideTransaction: AsyncLocalStorage<object>,
): PostgresDialect {
  return new StorePostgresDialect(pool, insideTransaction);
}
