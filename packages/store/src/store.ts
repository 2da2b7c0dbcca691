/**
 * The storage layer every stateful Tessera service opens: an embedded SQLite file under the data
 * directory by default, PostgreSQL when a `DATABASE_URL` is given, one code path for both.
 *
 * Why Kysely: services write typed SQL once and it compiles for either store. Kysely ships both
 * dialects (SqliteDialect over better-sqlite3, PostgresDialect over pg), a Migrator with a
 * cross-replica lock, real transactions with isolation levels, and `FOR UPDATE … SKIP LOCKED`;
 * it is a thin builder (no ORM, no identity map), so the SQL that runs is the SQL you read, and it
 * is small and dependency-free. An ORM would hide the row locking the wallet and the job queue
 * depend on; hand-written SQL per dialect would mean two code paths to test.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { mkdirSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { basename, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import Database from "better-sqlite3";
import { Kysely, type SelectQueryBuilder, sql, type Transaction } from "kysely";
import pg from "pg";
import { createPostgresDialect, createSqliteDialect } from "./dialects.js";
import { StoreConflictError } from "./errors.js";
import { migrateToLatest, type StoreMigrations } from "./migrations.js";
import type { StoreLogger } from "./store-logger.js";

/** Which database a store runs on. */
export type StoreDialect = "sqlite" | "postgres";

/** What {@link openStore} needs. Everything but the four first fields has a default. */
export interface StoreOptions {
  /**
   * A `postgres://` or `postgresql://` URL: use PostgreSQL. Undefined or empty: use SQLite.
   * Never logged (it may carry a password).
   */
  readonly databaseUrl?: string | undefined;
  /** Directory for the SQLite file; created if missing. Unused on PostgreSQL. */
  readonly dataDir: string;
  /** SQLite file name inside `dataDir` (a bare name, e.g. "wallet.sqlite"). */
  readonly fileName: string;
  /** All migrations of this database, merged from every module that owns tables in it. */
  readonly migrations: StoreMigrations;
  readonly logger?: StoreLogger | undefined;
  /**
   * PostgreSQL schema to own: created if missing and made the only entry of every connection's
   * `search_path`, so tables, migrations and bookkeeping all live there. Lower-case letters,
   * digits and `_`. Defaults to the server's `search_path` (normally `public`). Tests pass a unique
   * one per run so parallel runs never collide.
   */
  readonly schema?: string | undefined;
  /** Most PostgreSQL connections at once. Defaults to 10. */
  readonly poolMax?: number | undefined;
  /** How long to wait for a PostgreSQL connection before failing. Defaults to 10,000 ms. */
  readonly connectTimeoutMs?: number | undefined;
  /** How long SQLite waits for another process's lock on the file. Defaults to 5,000 ms. */
  readonly busyTimeoutMs?: number | undefined;
  /**
   * SQLite only. "commit" (default): `synchronous=FULL`, every commit is fsynced before it
   * returns, blocking the event loop for the fsync. "explicit": `synchronous=NORMAL`, a commit
   * only writes the WAL, and {@link Store.sync} fsyncs it on libuv's thread pool; a write is then
   * durable once a `sync()` started after its commit resolved. For a database whose every writer
   * calls `sync()` before acknowledging (the nonce store does), acknowledged is still durable,
   * and a slow disk no longer stalls the whole process per commit. Never pick it for a database
   * with writers that do not sync (a power loss could lose their acknowledged commits).
   */
  readonly sqliteDurability?: "commit" | "explicit" | undefined;
}

/** How {@link Store.transaction} runs its callback. */
export interface TransactionOptions {
  /**
   * "serializable": PostgreSQL runs the transaction at SERIALIZABLE isolation. SQLite is always
   * serializable here (one writer at a time), so the option changes nothing there.
   * Defaults to the database's default (READ COMMITTED on PostgreSQL).
   */
  readonly isolation?: "serializable" | undefined;
  /**
   * Tries on PostgreSQL when the transaction loses to a concurrent one (SQLSTATE 40001
   * serialization failure, 40P01 deadlock), with a short randomized back-off between tries.
   * Then {@link StoreConflictError}. Defaults to 20. SQLite never conflicts this way.
   *
   * For a hot row (one balance, one counter) prefer READ COMMITTED plus `store.forUpdate(...)`:
   * the row lock makes rivals wait instead of fail. 100 parallel serializable increments of one
   * row needed about 3 tries each, and up to 12 for the unluckiest, on a 2-core machine.
   */
  readonly maxAttempts?: number | undefined;
}

/** How {@link Store.forUpdate} locks the rows a query selects. */
export interface LockOptions {
  /** Skip rows another transaction holds instead of waiting (job queue claims). Defaults to false. */
  readonly skipLocked?: boolean | undefined;
}

/** An open database: typed queries, transactions, row locks. */
export interface Store<DB> {
  /** Kysely for queries outside transactions. Inside `transaction()`, use its `trx` instead. */
  readonly db: Kysely<DB>;
  readonly dialect: StoreDialect;
  /**
   * Runs `fn` in one transaction: committed when it resolves, rolled back when it throws (and the
   * error is rethrown). Every query of `fn` must go through `trx`; using `store.db` or a nested
   * `transaction()` inside it fails with StoreMisuseError instead of deadlocking (SQLite) or
   * silently escaping the transaction (PostgreSQL).
   *
   * On SQLite, concurrent transactions queue and run one at a time, each holding the write lock
   * from its start. On PostgreSQL they run concurrently; on a serialization failure or deadlock
   * the whole of `fn` runs again (see {@link TransactionOptions.maxAttempts}), so `fn` must not
   * have effects outside the database that cannot be repeated.
   */
  transaction<T>(
    fn: (trx: Transaction<DB>) => Promise<T>,
    options?: TransactionOptions,
  ): Promise<T>;
  /**
   * Locks the rows `query` selects until the transaction ends: `FOR UPDATE [SKIP LOCKED]` on
   * PostgreSQL. On SQLite it returns `query` unchanged: a transaction there already holds the
   * write lock of the whole database, so no one else can change or claim the rows meanwhile.
   * Only meaningful on a query built from a `trx`.
   */
  forUpdate<TB extends keyof DB, O>(
    query: SelectQueryBuilder<DB, TB, O>,
    options?: LockOptions,
  ): SelectQueryBuilder<DB, TB, O>;
  /**
   * Makes every commit that returned before this call durable. A no-op (resolved) on PostgreSQL
   * and on SQLite opened with the default durability, whose commits are durable when they
   * return; with `sqliteDurability: "explicit"` it fsyncs the WAL file off the event loop.
   */
  sync(): Promise<void>;
  /**
   * Waits for running work, then closes the file or the pool. Safe to call twice; the store is
   * unusable afterwards.
   */
  close(): Promise<void>;
}

const DEFAULT_POOL_MAX = 10;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_BUSY_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_ATTEMPTS = 20;
const RETRY_BASE_MS = 5;
const RETRY_CAP_MS = 200;
const CONFLICT_SQLSTATES = new Set(["40001", "40P01"]);
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Opens the store `options` describe and runs pending migrations before returning. Throws
 * {@link StoreMigrationError} (store closed again) when a migration fails, and a plain Error for
 * a bad URL, file name or schema, an unreachable server or a SQLite file that refuses WAL.
 *
 * SQLite: `<dataDir>/<fileName>` in WAL mode with `synchronous=FULL` (a commit is on disk before
 * it is acknowledged; see {@link StoreOptions.sqliteDurability} for the explicit-sync variant),
 * `busy_timeout`, `foreign_keys=ON`.
 * PostgreSQL: a pg Pool of `poolMax` connections; see {@link StoreOptions.schema}.
 */
export async function openStore<DB>(options: StoreOptions): Promise<Store<DB>> {
  const insideTransaction = new AsyncLocalStorage<object>();
  const databaseUrl = options.databaseUrl === "" ? undefined : options.databaseUrl;
  const opened =
    databaseUrl === undefined
      ? openSqlite<DB>(options, insideTransaction)
      : await openPostgres<DB>(databaseUrl, options, insideTransaction);
  const { db, dialect, migrationTableSchema, sync } = opened;
  try {
    await migrateToLatest(db, options.migrations, {
      migrationTableSchema,
      logger: options.logger,
    });
  } catch (error) {
    await db.destroy();
    throw error;
  }
  options.logger?.info(
    dialect === "sqlite"
      ? { dialect, file: options.fileName }
      : { dialect, schema: migrationTableSchema },
    "store opened",
  );
  return createStore(db, dialect, insideTransaction, options.logger, sync);
}

interface OpenedDatabase<DB> {
  readonly db: Kysely<DB>;
  readonly dialect: StoreDialect;
  readonly migrationTableSchema: string | undefined;
  /** See {@link Store.sync}. */
  readonly sync: () => Promise<void>;
}

const resolved = () => Promise.resolve();

/**
 * fdatasync of `<file>-wal` on the thread pool. On Linux any descriptor of a file flushes all of
 * its written pages, so this makes every WAL frame written before it began durable. Opened per
 * call, so it always reaches the WAL file SQLite uses now. A missing WAL means nothing is
 * pending: SQLite deletes it only after checkpointing (and syncing) it into the database.
 */
async function syncWalFile(file: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(`${file}-wal`, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

function openSqlite<DB>(
  options: StoreOptions,
  insideTransaction: AsyncLocalStorage<object>,
): OpenedDatabase<DB> {
  const { dataDir, fileName } = options;
  if (fileName === "" || fileName === "." || fileName === ".." || basename(fileName) !== fileName) {
    throw new Error(`store fileName must be a bare file name, got "${fileName}"`);
  }
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, fileName);
  const explicit = options.sqliteDurability === "explicit";
  const database = new Database(file);
  try {
    const journalMode = database.pragma("journal_mode = WAL", { simple: true });
    if (journalMode !== "wal") {
      throw new Error(`SQLite file ${fileName} refused WAL mode (journal_mode=${journalMode})`);
    }
    // NORMAL in WAL mode: commits write the WAL without fsync; sync() fsyncs it (and SQLite
    // still syncs the WAL before every checkpoint), so committed frames never reach the
    // database file unsynced.
    database.pragma(explicit ? "synchronous = NORMAL" : "synchronous = FULL");
    database.pragma(
      `busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS)}`,
    );
    database.pragma("foreign_keys = ON");
  } catch (error) {
    database.close();
    throw error;
  }
  const db = new Kysely<DB>({ dialect: createSqliteDialect(database, insideTransaction) });
  return {
    db,
    dialect: "sqlite",
    migrationTableSchema: undefined,
    sync: explicit ? () => syncWalFile(file) : resolved,
  };
}

async function openPostgres<DB>(
  databaseUrl: string,
  options: StoreOptions,
  insideTransaction: AsyncLocalStorage<object>,
): Promise<OpenedDatabase<DB>> {
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new Error("DATABASE_URL must start with postgres:// or postgresql://");
  }
  const { schema, logger } = options;
  if (schema !== undefined && !SCHEMA_NAME.test(schema)) {
    throw new Error(`store schema must match ${SCHEMA_NAME}, got "${schema}"`);
  }
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.poolMax ?? DEFAULT_POOL_MAX,
    connectionTimeoutMillis: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    // Set at connection start-up, so no query on any connection can run with another search_path.
    options: schema === undefined ? undefined : `-c search_path=${schema}`,
  });
  // Without a listener, an idle connection dropped by the server would crash the process.
  pool.on("error", (error) => {
    logger?.error({ err: error.message }, "idle PostgreSQL connection failed");
  });
  const db = new Kysely<DB>({ dialect: createPostgresDialect(pool, insideTransaction) });
  try {
    if (schema !== undefined) {
      await createSchemaIfMissing(db, schema);
    }
    const { rows } = await sql<{
      schema: string | null;
    }>`select current_schema() as schema`.execute(db);
    const current = rows[0]?.schema ?? null;
    if (current === null) {
      throw new Error("PostgreSQL search_path names no existing schema");
    }
    return { db, dialect: "postgres", migrationTableSchema: current, sync: resolved };
  } catch (error) {
    await db.destroy();
    throw error;
  }
}

async function createSchemaIfMissing<DB>(db: Kysely<DB>, schema: string): Promise<void> {
  try {
    await sql`create schema if not exists ${sql.id(schema)}`.execute(db);
  } catch (error) {
    // Two processes creating the same schema at once: the loser sees a duplicate; the schema exists.
    if (!hasSqlState(error, ["23505", "42P06"])) {
      throw error;
    }
  }
}

function createStore<DB>(
  db: Kysely<DB>,
  dialect: StoreDialect,
  insideTransaction: AsyncLocalStorage<object>,
  logger: StoreLogger | undefined,
  sync: () => Promise<void>,
): Store<DB> {
  let closing: Promise<void> | undefined;

  const runOnce = <T>(fn: (trx: Transaction<DB>) => Promise<T>, serializable: boolean) => {
    const builder =
      serializable && dialect === "postgres"
        ? db.transaction().setIsolationLevel("serializable")
        : db.transaction();
    return builder.execute((trx) => insideTransaction.run({}, () => fn(trx)));
  };

  return {
    db,
    dialect,
    async transaction<T>(
      fn: (trx: Transaction<DB>) => Promise<T>,
      options: TransactionOptions = {},
    ): Promise<T> {
      const serializable = options.isolation === "serializable";
      if (dialect === "sqlite") {
        return runOnce(fn, serializable);
      }
      const maxAttempts = Math.max(1, options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await runOnce(fn, serializable);
        } catch (error) {
          if (!hasSqlState(error, CONFLICT_SQLSTATES)) {
            throw error;
          }
          if (attempt >= maxAttempts) {
            logger?.warn({ attempts: attempt }, "transaction gave up after repeated conflicts");
            throw new StoreConflictError(attempt, error);
          }
          logger?.debug({ attempt, sqlState: sqlStateOf(error) }, "transaction conflict; retrying");
          // Full jitter: conflicting transactions spread out instead of colliding again in step.
          await delay(Math.random() * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** attempt));
        }
      }
    },
    forUpdate(query, options = {}) {
      if (dialect === "sqlite") {
        return query;
      }
      const locked = query.forUpdate();
      return options.skipLocked === true ? locked.skipLocked() : locked;
    },
    sync,
    close() {
      closing ??= db.destroy();
      return closing;
    },
  };
}

function sqlStateOf(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error) {
    const { code } = error;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

function hasSqlState(error: unknown, states: Iterable<string>): boolean {
  const state = sqlStateOf(error);
  return state !== undefined && new Set(states).has(state);
}
