import assert from "node:assert/strict";
import { test } from "node:test";
import { type Kysely, type Migration, sql } from "kysely";
import { StoreMigrationError, StoreMisuseError } from "./errors.js";
import { fromMoney, MONEY_MAX, type Money, moneyColumn, toMoney } from "./money.js";
import { createNonceStore, type NonceStoreTables, nonceStoreMigrations } from "./nonce-store.js";
import type { Store } from "./store.js";
import { describeEachStore, type StoreBackend } from "./testing.js";

interface TestTables extends NonceStoreTables {
  migration_log: { name: string };
  account: { id: string; balance: Money };
  note: { id: string; body: string };
  job: { id: string; claimed_by: string | null };
}

const testMigrations: Record<string, Migration> = {
  "test/0001-account": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("migration_log")
        .addColumn("name", "text", (col) => col.notNull())
        .execute();
      await db.schema
        .createTable("account")
        .addColumn("id", "text", (col) => col.primaryKey())
        .$call(moneyColumn("balance"))
        .execute();
      await sql`insert into migration_log (name) values ('0001')`.execute(db);
    },
  },
  "test/0002-note-and-job": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("note")
        .addColumn("id", "text", (col) => col.primaryKey())
        .addColumn("body", "text", (col) => col.notNull())
        .execute();
      await db.schema
        .createTable("job")
        .addColumn("id", "text", (col) => col.primaryKey())
        .addColumn("claimed_by", "text")
        .execute();
      await sql`insert into migration_log (name) values ('0002')`.execute(db);
    },
  },
};

const migrations = { ...nonceStoreMigrations, ...testMigrations };

function storeSuite(backend: StoreBackend): void {
  const open = (space?: string, extra: Record<string, Migration> = {}) =>
    backend.open<TestTables>({
      migrations: { ...migrations, ...extra },
      ...(space === undefined ? {} : { space }),
    });

  async function balanceOf(store: Store<TestTables>, id: string): Promise<bigint> {
    const row = await store.db
      .selectFrom("account")
      .select("balance")
      .where("id", "=", id)
      .executeTakeFirstOrThrow();
    return fromMoney(row.balance);
  }

  test("opening applies the migrations once; reopening with a new one applies only that", async () => {
    const first = await open("migrate");
    await first.db.insertInto("note").values({ id: "n1", body: "kept" }).execute();
    await first.close();

    const extra = {
      "test/0003-extra": {
        async up(db: Kysely<unknown>) {
          await sql`insert into migration_log (name) values ('0003')`.execute(db);
        },
      },
    };
    const second = await open("migrate", extra);
    const log = await second.db
      .selectFrom("migration_log")
      .select("name")
      .orderBy("name")
      .execute();
    assert.deepEqual(
      log.map((row) => row.name),
      ["0001", "0002", "0003"],
    );
    const notes = await second.db.selectFrom("note").selectAll().execute();
    assert.deepEqual(notes, [{ id: "n1", body: "kept" }]);
    await second.close();

    const third = await open("migrate", extra);
    const again = await third.db.selectFrom("migration_log").select("name").execute();
    assert.equal(again.length, 3, "reopening must not run any migration twice");
  });

  test("a failing migration is named in the error and leaves nothing behind", async () => {
    const broken = {
      "test/0099-broken": {
        async up(db: Kysely<unknown>) {
          await db.schema.createTable("half_done").addColumn("id", "text").execute();
          throw new Error("disk on fire");
        },
      },
    };
    await assert.rejects(open("broken", broken), (error: unknown) => {
      assert.ok(error instanceof StoreMigrationError);
      assert.equal(error.migrationName, "test/0099-broken");
      assert.match(error.message, /test\/0099-broken.*disk on fire/);
      return true;
    });
    const store = await open("broken");
    const tables = await store.db.introspection.getTables();
    const names = tables.map((table) => table.name);
    assert.ok(names.includes("account"), "the good migrations apply on the next open");
    assert.ok(!names.includes("half_done"), "the failed migration's table was rolled back");
  });

  test("a transaction that throws rolls back every write it made", async () => {
    const store = await open();
    await store.db
      .insertInto("account")
      .values({ id: "rb", balance: toMoney(7n) })
      .execute();
    const failure = new Error("abort transfer");
    await assert.rejects(
      store.transaction(async (trx) => {
        await trx.insertInto("note").values({ id: "rb-1", body: "a" }).execute();
        await trx
          .updateTable("account")
          .set({ balance: toMoney(0n) })
          .where("id", "=", "rb")
          .execute();
        await trx.insertInto("note").values({ id: "rb-2", body: "b" }).execute();
        throw failure;
      }),
      (error) => error === failure,
    );
    assert.equal(await balanceOf(store, "rb"), 7n);
    const notes = await store.db
      .selectFrom("note")
      .select("id")
      .where("id", "like", "rb-%")
      .execute();
    assert.deepEqual(notes, []);

    const committed = await store.transaction(async (trx) => {
      await trx.insertInto("note").values({ id: "rb-3", body: "c" }).execute();
      return "done";
    });
    assert.equal(committed, "done", "the store stays usable after a rollback");
  });

  test("100 concurrent read-modify-write transactions with a row lock lose no update", async () => {
    const store = await open();
    await store.db
      .insertInto("account")
      .values({ id: "locked", balance: toMoney(0n) })
      .execute();
    await Promise.all(
      Array.from({ length: 100 }, () =>
        store.transaction(async (trx) => {
          const row = await store
            .forUpdate(trx.selectFrom("account").select("balance").where("id", "=", "locked"))
            .executeTakeFirstOrThrow();
          await trx
            .updateTable("account")
            .set({ balance: toMoney(fromMoney(row.balance) + 1n) })
            .where("id", "=", "locked")
            .execute();
        }),
      ),
    );
    assert.equal(await balanceOf(store, "locked"), 100n);
  });

  test("100 concurrent serializable transactions lose no update", async () => {
    const store = await open();
    await store.db
      .insertInto("account")
      .values({ id: "serial", balance: toMoney(0n) })
      .execute();
    await Promise.all(
      Array.from({ length: 100 }, () =>
        store.transaction(
          async (trx) => {
            const row = await trx
              .selectFrom("account")
              .select("balance")
              .where("id", "=", "serial")
              .executeTakeFirstOrThrow();
            await trx
              .updateTable("account")
              .set({ balance: toMoney(fromMoney(row.balance) + 1n) })
              .where("id", "=", "serial")
              .execute();
          },
          { isolation: "serializable" },
        ),
      ),
    );
    assert.equal(await balanceOf(store, "serial"), 100n);
  });

  test("claims with skip-locked hand every job to exactly one worker", async () => {
    const store = await open();
    const ids = Array.from({ length: 30 }, (_, i) => `job-${String(i).padStart(2, "0")}`);
    await store.db
      .insertInto("job")
      .values(ids.map((id) => ({ id, claimed_by: null })))
      .execute();
    const claims = await Promise.all(
      ids.map((_, worker) =>
        store.transaction(async (trx) => {
          const job = await store
            .forUpdate(
              trx
                .selectFrom("job")
                .select("id")
                .where("claimed_by", "is", null)
                .orderBy("id")
                .limit(1),
              { skipLocked: true },
            )
            .executeTakeFirst();
          if (job === undefined) {
            return undefined;
          }
          await trx
            .updateTable("job")
            .set({ claimed_by: `worker-${worker}` })
            .where("id", "=", job.id)
            .execute();
          return job.id;
        }),
      ),
    );
    const claimed = claims.filter((id) => id !== undefined);
    assert.equal(new Set(claimed).size, claimed.length, "no job was claimed twice");
    assert.ok(claimed.length > 0);
    const rows = await store.db
      .selectFrom("job")
      .select(["id", "claimed_by"])
      .where("claimed_by", "is not", null)
      .execute();
    const owners = new Map(rows.map((row) => [row.id, row.claimed_by]));
    assert.equal(owners.size, claimed.length);
    claims.forEach((id, worker) => {
      if (id !== undefined) {
        assert.equal(owners.get(id), `worker-${worker}`, `${id} belongs to its claimer`);
      }
    });
  });

  test("using store.db inside a transaction fails fast instead of hanging", async () => {
    const store = await open();
    await assert.rejects(
      store.transaction(async () => {
        await store.db.selectFrom("note").selectAll().execute();
      }),
      StoreMisuseError,
    );
    await assert.rejects(
      store.transaction(() => store.transaction(async () => "nested")),
      StoreMisuseError,
    );
    assert.equal(await store.transaction(async () => "ok"), "ok");
  });

  test("money columns keep 2^100, 2^128 and the maximum exactly", async () => {
    const store = await open();
    const values = { m100: 2n ** 100n, m128: 2n ** 128n, mmax: MONEY_MAX, mzero: 0n };
    await store.db
      .insertInto("account")
      .values(Object.entries(values).map(([id, value]) => ({ id, balance: toMoney(value) })))
      .execute();
    for (const [id, value] of Object.entries(values)) {
      assert.equal(await balanceOf(store, id), value, id);
    }
    assert.equal(await balanceOf(store, "m100"), 1267650600228229401496703205376n);
  });

  test("money columns compare and sort numerically in SQL", async () => {
    const store = await open("money_order");
    const amounts = [10n, 9n, 2n ** 100n, 0n, 2n ** 64n + 1n, 2n ** 64n, 100n];
    await store.db
      .insertInto("account")
      .values(amounts.map((amount, i) => ({ id: `a${i}`, balance: toMoney(amount) })))
      .execute();
    const sorted = await store.db
      .selectFrom("account")
      .select("balance")
      .orderBy("balance")
      .execute();
    assert.deepEqual(
      sorted.map((row) => fromMoney(row.balance)),
      [...amounts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    const above = await store.db
      .selectFrom("account")
      .select("balance")
      .where("balance", ">", toMoney(10n))
      .execute();
    assert.equal(above.length, 4);
  });

  test("the database itself refuses mis-encoded money", async () => {
    const store = await open();
    for (const bad of ["-1", "5", "1e5", `${"0".repeat(77)}x`, `-${"0".repeat(77)}`]) {
      await assert.rejects(
        sql`insert into account (id, balance) values (${`bad-${bad}`}, ${bad})`.execute(store.db),
        `"${bad}" must be refused`,
      );
    }
  });

  test("nonce store: 100 concurrent advances with one nonce, exactly one wins", async () => {
    const store = await open();
    const nonces = createNonceStore(store);
    const fresh = await Promise.all(Array.from({ length: 100 }, () => nonces.advance("alice", 5n)));
    assert.equal(fresh.filter(Boolean).length, 1, "first nonce of a new caller");
    const next = await Promise.all(Array.from({ length: 100 }, () => nonces.advance("alice", 6n)));
    assert.equal(next.filter(Boolean).length, 1, "next nonce of a known caller");
    assert.equal(await nonces.highWater("alice"), 6n);
  });

  test("nonce store: only a greater nonce advances, per caller", async () => {
    const store = await open();
    const nonces = createNonceStore(store);
    assert.equal(await nonces.advance("bob", 10n), true);
    assert.equal(await nonces.advance("bob", 9n), false);
    assert.equal(await nonces.advance("bob", 10n), false);
    assert.equal(await nonces.advance("carol", 1n), true, "another caller has its own mark");
    assert.equal(await nonces.advance("bob", 2n ** 64n), true);
    assert.equal(await nonces.advance("bob", 2n ** 64n - 1n), false);
    assert.equal(await nonces.highWater("bob"), 2n ** 64n);
    assert.equal(await nonces.highWater("nobody"), undefined);
    await assert.rejects(nonces.advance("bob", -1n), RangeError);
    await assert.rejects(nonces.advance("", 1n), RangeError);
  });

  test("nonce store: the high-water mark survives close and reopen", async () => {
    const before = await open("nonce_restart");
    assert.equal(await createNonceStore(before).advance("dave", 41n), true);
    await before.close();
    await before.close();

    const after = await open("nonce_restart");
    const nonces = createNonceStore(after);
    assert.equal(
      await nonces.advance("dave", 41n),
      false,
      "a replayed nonce is refused after restart",
    );
    assert.equal(await nonces.advance("dave", 42n), true);
  });

  test("nonce store: one caller's 1, 2, 3 in one batch all advance", async () => {
    const store = await open();
    const nonces = createNonceStore(store);
    const results = await Promise.all([1n, 2n, 3n].map((n) => nonces.advance("erin", n)));
    assert.deepEqual(results, [true, true, true]);
    assert.equal(await nonces.highWater("erin"), 3n);
  });

  test("nonce store: 3, 2, 1 in one batch, in that order: only 3 advances", async () => {
    const store = await open();
    const nonces = createNonceStore(store);
    assert.deepEqual(await Promise.all([3n, 2n, 1n].map((n) => nonces.advance("frank", n))), [
      true,
      false,
      false,
    ]);
    // And against a stored mark: 4 passes 3, then 4 again and 2 do not, 9 does.
    assert.deepEqual(await Promise.all([4n, 4n, 2n, 9n].map((n) => nonces.advance("frank", n))), [
      true,
      false,
      false,
      true,
    ]);
    assert.equal(await nonces.highWater("frank"), 9n);
  });

  test("nonce store: equal nonces in one batch, only the first call wins", async () => {
    const store = await open();
    const nonces = createNonceStore(store);
    assert.deepEqual(await Promise.all([7n, 7n, 7n].map((n) => nonces.advance("gina", n))), [
      true,
      false,
      false,
    ]);
    assert.deepEqual(await Promise.all([7n, 8n, 8n].map((n) => nonces.advance("gina", n))), [
      false,
      true,
      false,
    ]);
  });

  test("nonce store: callers interleaved in one batch keep their own marks", async () => {
    const store = await open();
    const nonces = createNonceStore(store);
    assert.equal(await nonces.advance("hank", 100n), true);
    const calls: Array<[string, bigint]> = [
      ["hank", 50n],
      ["ivy", 50n],
      ["hank", 101n],
      ["ivy", 49n],
      ["june", 0n],
      ["hank", 101n],
    ];
    const results = await Promise.all(calls.map(([caller, n]) => nonces.advance(caller, n)));
    assert.deepEqual(results, [false, true, true, false, true, false]);
    assert.equal(await nonces.highWater("hank"), 101n);
    assert.equal(await nonces.highWater("ivy"), 50n);
    assert.equal(await nonces.highWater("june"), 0n);
  });

  test("nonce store: two nonce stores on one database, exactly one call wins", async () => {
    const store = await open();
    const other = await open();
    const first = createNonceStore(store);
    const second = createNonceStore(other);
    for (const nonce of [1n, 2n]) {
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? first : second).advance("kim", nonce)),
      );
      assert.equal(results.filter(Boolean).length, 1, `nonce ${nonce}`);
    }
    assert.equal(await first.highWater("kim"), 2n);
    // One call each: both batches are a single upsert, racing on the row.
    for (const nonce of [1n, 2n]) {
      const results = await Promise.all([first, second].map((n) => n.advance("lou", nonce)));
      assert.equal(results.filter(Boolean).length, 1, `lou's nonce ${nonce}`);
    }
  });

  test("nonce store: a failed batch rejects every call in it and records none", async () => {
    const store = await open("nonce_poison");
    const nonces = createNonceStore(store);
    assert.equal(await nonces.advance("lee", 1n), true);
    // A trigger that refuses one caller's row fails the batch's transaction.
    if (backend.dialect === "sqlite") {
      await sql`create trigger nonce_poison before insert on nonce_high_water
        when new.caller = 'poison'
        begin select raise(abort, 'poisoned caller'); end`.execute(store.db);
    } else {
      await sql`create function nonce_poison() returns trigger language plpgsql as $$
        begin
          if new.caller = 'poison' then raise exception 'poisoned caller'; end if;
          return new;
        end $$`.execute(store.db);
      await sql`create trigger nonce_poison before insert on nonce_high_water
        for each row execute function nonce_poison()`.execute(store.db);
    }
    const outcomes = await Promise.allSettled([
      nonces.advance("lee", 2n),
      nonces.advance("poison", 1n),
      nonces.advance("mia", 1n),
    ]);
    assert.deepEqual(
      outcomes.map((outcome) => outcome.status),
      ["rejected", "rejected", "rejected"],
    );
    for (const outcome of outcomes) {
      assert.match(String((outcome as PromiseRejectedResult).reason), /poisoned caller/);
    }
    assert.equal(await nonces.highWater("lee"), 1n, "nothing of the batch was committed");
    assert.equal(await nonces.highWater("mia"), undefined);
    // The next batch commits as usual.
    assert.deepEqual(await Promise.all([nonces.advance("lee", 2n), nonces.advance("mia", 1n)]), [
      true,
      true,
    ]);
  });
}

await describeEachStore("store", storeSuite);
