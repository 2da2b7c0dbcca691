import { type Kysely, type Migration, type MigrationProvider, Migrator } from "kysely";
import { StoreMigrationError } from "./errors.js";
import type { StoreLogger } from "./store-logger.js";

/** Migrations by unique name. Pending ones run in name order. */
export type StoreMigrations = Readonly<Record<string, Migration>>;

/** Where and how {@link migrateToLatest} runs. */
export interface MigrateOptions {
  /** Schema that holds Kysely's bookkeeping tables (PostgreSQL only; undefined on SQLite). */
  readonly migrationTableSchema: string | undefined;
  readonly logger: StoreLogger | undefined;
}

/**
 * Brings the database up to date with `migrations` and returns the names applied now (none when
 * it already was). All pending migrations run in one transaction under Kysely's migration lock,
 * so replicas that start together apply each migration once, and a failure leaves nothing behind.
 *
 * Migrations from independent modules (a service's own, the nonce store's) are merged into one
 * record, so names are allowed to arrive out of order: a module added later may bring a name that
 * sorts before migrations already applied. Prefix names by module ("nonce-store/0001-…") to keep
 * them unique. Throws {@link StoreMigrationError} naming the migration that failed.
 */
export async function migrateToLatest<DB>(
  db: Kysely<DB>,
  migrations: StoreMigrations,
  options: MigrateOptions,
): Promise<readonly string[]> {
  const provider: MigrationProvider = { getMigrations: async () => ({ ...migrations }) };
  const migrator = new Migrator({
    db,
    provider,
    allowUnorderedMigrations: true,
    ...(options.migrationTableSchema === undefined
      ? {}
      : { migrationTableSchema: options.migrationTableSchema }),
  });
  const { error, results = [] } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results.find((result) => result.status === "Error");
    throw new StoreMigrationError(failed?.migrationName, error);
  }
  const applied = results.map((result) => result.migrationName);
  for (const name of applied) {
    options.logger?.info({ migration: name }, "store migration applied");
  }
  return applied;
}
