import type { Kysely, Migration } from "kysely";
import { fromMoney, MONEY_MAX, type Money, moneyColumn, toMoney } from "./money.js";
import type { Store } from "./store.js";

/** The table the nonce store owns. Add it to the service's database interface. */
export interface NonceStoreTables {
  nonce_high_water: {
    caller: string;
    /** Highest nonce accepted from the caller, encoded like money (exact, comparable in SQL). */
    nonce: Money;
  };
}

/**
 * The nonce store's migrations. Merge them into the `migrations` given to `openStore` of every
 * database that uses {@link createNonceStore}: `{ ...nonceStoreMigrations, ...ownMigrations }`.
 */
export const nonceStoreMigrations: Readonly<Record<string, Migration>> = {
  "nonce-store/0001-create-nonce-high-water": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("nonce_high_water")
        .addColumn("caller", "text", (col) => col.primaryKey())
        .$call(moneyColumn("nonce"))
        .execute();
    },
  },
};

/**
 * Per-caller nonce high-water marks that survive restarts: the replay guard of the signed-request
 * verifier.
 */
export interface NonceStore {
  /**
   * Records `nonce` for `caller` if it is greater than every nonce recorded for that caller
   * before, and says whether it was. The check and the write are one SQL statement, so among
   * concurrent calls with the same caller and nonce exactly one gets `true`, on both stores, and
   * a `true` is durable before it is returned. Throws RangeError for an empty caller or a nonce
   * outside 0..10^78-1.
   */
  advance(caller: string, nonce: bigint): Promise<boolean>;
  /** The highest nonce recorded for `caller`, or undefined if none was. */
  highWater(caller: string): Promise<bigint | undefined>;
}

/**
 * A {@link NonceStore} over `store`, whose migrations must include {@link nonceStoreMigrations}.
 * Use it outside `store.transaction()` callbacks (it runs its own statement).
 */
export function createNonceStore<DB extends NonceStoreTables>(store: Store<DB>): NonceStore {
  // The store's DB type includes ours; Kysely cannot see that through the generic.
  const db = store.db as unknown as Kysely<NonceStoreTables>;
  return {
    async advance(caller, nonce) {
      checkCaller(caller);
      if (nonce < 0n || nonce > MONEY_MAX) {
        throw new RangeError("nonce must be between 0 and 10^78 - 1");
      }
      // INSERT … ON CONFLICT DO UPDATE … WHERE is atomic on both stores: PostgreSQL locks the row
      // (or the key being inserted) and re-checks the WHERE against the latest committed value;
      // SQLite runs one statement at a time. A lost race updates zero rows.
      const result = await db
        .insertInto("nonce_high_water")
        .values({ caller, nonce: toMoney(nonce) })
        .onConflict((conflict) =>
          conflict
            .column("caller")
            .doUpdateSet((eb) => ({ nonce: eb.ref("excluded.nonce") }))
            .where("nonce_high_water.nonce", "<", (eb) => eb.ref("excluded.nonce")),
        )
        .executeTakeFirstOrThrow();
      return result.numInsertedOrUpdatedRows === 1n;
    },
    async highWater(caller) {
      checkCaller(caller);
      const row = await db
        .selectFrom("nonce_high_water")
        .select("nonce")
        .where("caller", "=", caller)
        .executeTakeFirst();
      return row === undefined ? undefined : fromMoney(row.nonce);
    },
  };
}

function checkCaller(caller: string): void {
  if (typeof caller !== "string" || caller.length === 0) {
    throw new RangeError("caller must be a non-empty string");
  }
}
