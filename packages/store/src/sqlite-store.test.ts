import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { test } from "node:test";
import { type Kysely, type Migration, sql } from "kysely";
import { pino } from "pino";
import { createNonceStore, type NonceStoreTables, nonceStoreMigrations } from "./nonce-store.js";
import { openStore } from "./store.js";
import type { StoreLogger } from "./store-logger.js";
import { describeOnSqlite } from "./testing.js";

interface Tables {
  parent: { id: string };
  child: { id: string; parent_id: string };
}

const migrations: Record<string, Migration> = {
  "0001-parent-child": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("parent")
        .addColumn("id", "text", (col) => col.primaryKey())
        .execute();
      await db.schema
        .createTable("child")
        .addColumn("id", "text", (col) => col.primaryKey())
        .addColumn("parent_id", "text", (col) => col.notNull().references("parent.id"))
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

describeOnSqlite("sqlite store", (backend) => {
  test("creates its file under a missing dataDir, in WAL mode, durable and with foreign keys", async () => {
    const dataDir = join(backend.location().dataDir, "created", "here");
    const store = await openStore<Tables>({ dataDir, fileName: "fk.sqlite", migrations });
    try {
      assert.ok(existsSync(join(dataDir, "fk.sqlite")));
      const pragma = async (name: string) => {
        const { rows } = await sql<Record<string, unknown>>`pragma ${sql.raw(name)}`.execute(
          store.db,
        );
        return Object.values(rows[0] ?? {})[0];
      };
      assert.equal(await pragma("journal_mode"), "wal");
      assert.equal(
        await pragma("synchronous"),
        2,
        "2 is FULL: a commit is fsynced before it returns",
      );
      assert.equal(await pragma("busy_timeout"), 5000);
      await assert.rejects(
        store.db.insertInto("child").values({ id: "orphan", parent_id: "missing" }).execute(),
        /FOREIGN KEY/,
      );
    } finally {
      await store.close();
    }
  });

  test("explicit durability: commits skip the fsync until sync(), and the nonce store syncs", async () => {
    const dataDir = join(backend.location().dataDir, "explicit");
    const store = await openStore<Tables & NonceStoreTables>({
      dataDir,
      fileName: "explicit.sqlite",
      migrations: { ...nonceStoreMigrations, ...migrations },
      sqliteDurability: "explicit",
    });
    try {
      const { rows } = await sql<{ synchronous: number }>`pragma synchronous`.execute(store.db);
      assert.equal(rows[0]?.synchronous, 1, "1 is NORMAL: the WAL is fsynced by sync()");
      await store.db.insertInto("parent").values({ id: "p" }).execute();
      await store.sync();
      assert.ok(existsSync(join(dataDir, "explicit.sqlite-wal")), "the WAL sync() flushes");
      const nonces = createNonceStore(store);
      assert.deepEqual(
        await Promise.all([
          nonces.advance("a", 2n),
          nonces.advance("a", 2n),
          nonces.advance("b", 1n),
        ]),
        [true, false, true],
      );
      assert.equal(await nonces.highWater("a"), 2n);
    } finally {
      await store.close();
    }
    // Reopened with the default durability, the synced rows are there.
    const again = await openStore<Tables & NonceStoreTables>({
      dataDir,
      fileName: "explicit.sqlite",
      migrations: { ...nonceStoreMigrations, ...migrations },
    });
    try {
      assert.equal(await createNonceStore(again).highWater("b"), 1n);
      await again.sync(); // a no-op on a store whose commits are durable when they return
    } finally {
      await again.close();
    }
  });

  test("concurrent transactions run one after another, never interleaved", async () => {
    const store = await backend.open<Tables>({ migrations, space: "queue" });
    const events: string[] = [];
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        store.transaction(async (trx) => {
          events.push(`begin ${i}`);
          await trx
            .insertInto("parent")
            .values({ id: `p${i}` })
            .execute();
          await new Promise((resolve) => setImmediate(resolve));
          await trx.selectFrom("parent").selectAll().execute();
          events.push(`end ${i}`);
        }),
      ),
    );
    assert.equal(events.length, 16);
    for (let k = 0; k < events.length; k += 2) {
      const [begin, end] = [events[k] ?? "", events[k + 1] ?? ""];
      assert.match(begin, /^begin /);
      assert.equal(end, begin.replace("begin", "end"), `transactions interleaved: ${events}`);
    }
  });

  test("close waits for the running transaction, which commits", async () => {
    const store = await backend.open<Tables>({ migrations, space: "drain" });
    const started = deferred();
    const proceed = deferred();
    const running = store.transaction(async (trx) => {
      await trx.insertInto("parent").values({ id: "first" }).execute();
      started.resolve();
      await proceed.promise;
      await trx.insertInto("parent").values({ id: "second" }).execute();
    });
    await started.promise;
    const closed = store.close();
    proceed.resolve();
    await running;
    await closed;

    const reopened = await backend.open<Tables>({ migrations, space: "drain" });
    const rows = await reopened.db.selectFrom("parent").select("id").orderBy("id").execute();
    assert.deepEqual(
      rows.map((row) => row.id),
      ["first", "second"],
    );
  });

  test("logs each applied migration and the open store through a pino logger", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const logger: StoreLogger = pino(sink);
    await backend.open<Tables>({ migrations, space: "logged", logger });
    const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(
      logged.map(({ msg, migration, dialect, file }) => ({ msg, migration, dialect, file })),
      [
        { msg: "store migration applied", migration: "0001-parent-child" },
        { msg: "store opened", dialect: "sqlite", file: "logged.sqlite" },
      ].map((line) => ({ migration: undefined, dialect: undefined, file: undefined, ...line })),
    );
  });
});

test("openStore refuses a file name that is a path", async () => {
  await assert.rejects(
    openStore({ dataDir: "/tmp", fileName: "../escape.sqlite", migrations: {} }),
    /bare file name/,
  );
});

test("openStore refuses a DATABASE_URL that is not PostgreSQL, without echoing it", async () => {
  await assert.rejects(
    openStore({
      databaseUrl: "mysql://root:hunter2@db/x",
      dataDir: "/tmp",
      fileName: "x.sqlite",
      migrations: {},
    }),
    (error: Error) => /postgres:\/\//.test(error.message) && !error.message.includes("hunter2"),
  );
});
