/**
 * A schema migration failed while a store was opening. The store is closed again; nothing of the
 * failed migration is kept (both SQLite and PostgreSQL run the pending migrations in one
 * transaction). `migrationName` is undefined when the migrator failed before running any migration.
 */
export class StoreMigrationError extends Error {
  override readonly name = "StoreMigrationError";
  readonly migrationName: string | undefined;

  constructor(migrationName: string | undefined, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(
      migrationName === undefined
        ? `store migrations could not run: ${reason}`
        : `store migration "${migrationName}" failed: ${reason}`,
      { cause },
    );
    this.migrationName = migrationName;
  }
}

/**
 * A PostgreSQL transaction kept losing to concurrent ones (SQLSTATE 40001 serialization failure
 * or 40P01 deadlock) and gave up after `attempts` tries. Nothing of it was committed; the caller
 * may report "try again later" (Connect `aborted` or `unavailable`).
 */
export class StoreConflictError extends Error {
  override readonly name = "StoreConflictError";
  readonly attempts: number;

  constructor(attempts: number, cause: unknown) {
    super(`transaction still conflicted with concurrent transactions after ${attempts} attempts`, {
      cause,
    });
    this.attempts = attempts;
  }
}

/** The store was used in a way that would deadlock or silently escape a transaction. A bug. */
export class StoreMisuseError extends Error {
  override readonly name = "StoreMisuseError";
}
