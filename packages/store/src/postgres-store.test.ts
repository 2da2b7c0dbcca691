import assert from "node:assert/strict";
import { test } from "node:test";
import type { Kysely, Migration, Transaction } from "kysely";
import { StoreConflictError } from "./errors.js";
import { fromMoney, type Money, moneyColumn, toMoney } from "./money.js";
import type { Store } from "./store.js";
import { describeOnPostgres } from "./testing.js";

interface Tables {
  counter: { id: string; value: Money };
}

const migrations: Record<string, Migration> = {
  "0001-counter": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("counter")
        .addColumn("id", "text", (col) => col.primaryKey())
        .$call(moneyColumn("value"))
        .execute();
    },
  },
};

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

async function counterValue(store: Store<Tables>, id: string): Promise<bigint> {
  const row = await store.db
    .selectFrom("counter")
    .select("value")
    .where("id", "=", id)
    .executeTakeFirstOrThrow();
  return fromMoney(row.value);
}

/**
 * Makes a real serialization failure: the victim reads the counter, a rival increments and
 * commits, then the victim writes the value it read. Returns how often the victim's body ran.
 */
async function loseOneRace(store: Store<Tables>, id: string, maxAttempts: number) {
  await store.db
    .insertInto("counter")
    .values({ id, value: toMoney(0n) })
    .execute();
  const read = async (trx: Transaction<Tables>) => {
    const row = await trx
      .selectFrom("counter")
      .select("value")
      .where("id", "=", id)
      .executeTakeFirstOrThrow();
    return fromMoney(row.value);
  };
  const write = (trx: Transaction<Tables>, value: bigint) =>
    trx
      .updateTable("counter")
      .set({ value: toMoney(value) })
      .where("id", "=", id)
      .execute();

  const victimRead = deferred();
  const rivalCommitted = deferred();
  let victimRuns = 0;
  const victim = store.transaction(
    async (trx) => {
      victimRuns += 1;
      const value = await read(trx);
      if (victimRuns === 1) {
        victimRead.resolve();
        await rivalCommitted.promise;
      }
      await write(trx, value + 1n);
    },
    { isolation: "serializable", maxAttempts },
  );
  await victimRead.promise;
  await store.transaction(async (trx) => write(trx, (await read(trx)) + 1n), {
    isolation: "serializable",
  });
  rivalCommitted.resolve();
  const outcome = await victim.then(
    () => undefined,
    (error: unknown) => error,
  );
  return { outcome, victimRuns };
}

await describeOnPostgres("postgres store", (backend) => {
  test("a serialization failure reruns the transaction on fresh data", async () => {
    const store = await backend.open<Tables>({ migrations });
    const { outcome, victimRuns } = await loseOneRace(store, "retried", 20);
    assert.equal(outcome, undefined);
    assert.equal(victimRuns, 2);
    assert.equal(await counterValue(store, "retried"), 2n, "both increments count");
  });

  test("a transaction out of attempts fails with StoreConflictError and writes nothing", async () => {
    const store = await backend.open<Tables>({ migrations });
    const { outcome, victimRuns } = await loseOneRace(store, "gave-up", 1);
    assert.ok(outcome instanceof StoreConflictError);
    assert.equal(outcome.attempts, 1);
    assert.equal((outcome.cause as { code?: string }).code, "40001");
    assert.equal(victimRuns, 1);
    assert.equal(await counterValue(store, "gave-up"), 1n, "only the rival's increment");
  });

  test("stores in different schemas do not see each other's tables", async () => {
    const left = await backend.open<Tables>({ migrations, space: "left" });
    const right = await backend.open<Tables>({ migrations, space: "right" });
    await left.db
      .insertInto("counter")
      .values({ id: "only-left", value: toMoney(1n) })
      .execute();
    assert.deepEqual(await right.db.selectFrom("counter").selectAll().execute(), []);
    assert.equal(await counterValue(left, "only-left"), 1n);
  });
});
