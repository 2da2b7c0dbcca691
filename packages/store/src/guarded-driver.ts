import type { AsyncLocalStorage } from "node:async_hooks";
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type QueryCompiler,
  type TransactionSettings,
} from "kysely";
import { StoreMisuseError } from "./errors.js";

/** How a {@link GuardedDriver} treats the inner driver's transactions and shutdown. */
export interface GuardedDriverOptions {
  /**
   * Set (to any object) while a `store.transaction()` callback runs. Asking the driver for another
   * connection inside that async context means the callback used `store.db` instead of its `trx`:
   * on SQLite that waits forever for the one connection the transaction holds, and on PostgreSQL it
   * silently runs outside the transaction (and 10 such callbacks exhaust the pool). Both fail fast.
   */
  readonly insideTransaction: AsyncLocalStorage<object>;
  /** SQL that opens every transaction, replacing the inner driver's (which then ignores settings). */
  readonly beginSql?: string;
  /** Wait for the connection in use to be released before destroying (single-connection drivers). */
  readonly drainOnDestroy?: boolean;
}

/**
 * A Kysely driver that delegates to another one and adds the store's guard rails: it refuses to
 * hand out a second connection from inside a `store.transaction()` callback, can replace the
 * statement that opens a transaction (SQLite's `BEGIN IMMEDIATE`), and can drain before closing.
 */
export class GuardedDriver implements Driver {
  readonly #inner: Driver;
  readonly #options: GuardedDriverOptions;

  constructor(inner: Driver, options: GuardedDriverOptions) {
    this.#inner = inner;
    this.#options = options;
  }

  init(): Promise<void> {
    return this.#inner.init();
  }

  acquireConnection(): Promise<DatabaseConnection> {
    if (this.#options.insideTransaction.getStore() !== undefined) {
      return Promise.reject(
        new StoreMisuseError(
          "store.db (or a nested store.transaction) was used inside store.transaction(): " +
            "run every query of the callback on its trx argument",
        ),
      );
    }
    return this.#inner.acquireConnection();
  }

  async beginTransaction(
    connection: DatabaseConnection,
    settings: TransactionSettings,
  ): Promise<void> {
    const { beginSql } = this.#options;
    if (beginSql !== undefined) {
      await connection.executeQuery(CompiledQuery.raw(beginSql));
      return;
    }
    await this.#inner.beginTransaction(connection, settings);
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.commitTransaction(connection);
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.rollbackTransaction(connection);
  }

  savepoint(
    connection: DatabaseConnection,
    savepointName: string,
    compileQuery: QueryCompiler["compileQuery"],
  ): Promise<void> {
    return this.#requireSavepoints().savepoint(connection, savepointName, compileQuery);
  }

  rollbackToSavepoint(
    connection: DatabaseConnection,
    savepointName: string,
    compileQuery: QueryCompiler["compileQuery"],
  ): Promise<void> {
    return this.#requireSavepoints().rollbackToSavepoint(connection, savepointName, compileQuery);
  }

  releaseSavepoint(
    connection: DatabaseConnection,
    savepointName: string,
    compileQuery: QueryCompiler["compileQuery"],
  ): Promise<void> {
    return this.#requireSavepoints().releaseSavepoint(connection, savepointName, compileQuery);
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.#inner.releaseConnection(connection);
  }

  async destroy(): Promise<void> {
    if (this.#options.drainOnDestroy === true) {
      // Taking the only connection waits for the transaction or query holding it to finish.
      await this.#inner.acquireConnection();
    }
    await this.#inner.destroy();
  }

  #requireSavepoints(): Required<
    Pick<Driver, "savepoint" | "rollbackToSavepoint" | "releaseSavepoint">
  > {
    const { savepoint, rollbackToSavepoint, releaseSavepoint } = this.#inner;
    if (!savepoint || !rollbackToSavepoint || !releaseSavepoint) {
      throw new StoreMisuseError("this database driver does not support savepoints");
    }
    return {
      savepoint: savepoint.bind(this.#inner),
      rollbackToSavepoint: rollbackToSavepoint.bind(this.#inner),
      releaseSavepoint: releaseSavepoint.bind(this.#inner),
    };
  }
}
