/**
 * Nonce-store throughput: accepted `advance` calls per second on SQLite (a temporary file, WAL,
 * synchronous=FULL) and on PostgreSQL (TEST_DATABASE_URL or the local default, in a schema of its
 * own that is dropped afterwards): one call at a time (a batch per call), 64 in flight from 64
 * callers (batches of one call per caller: one upsert), and 64 in flight from one caller whose
 * nonces rise in call order (batches that read, decide in order, and write).
 *
 *   pnpm --filter @tessera/store bench [-- <calls per case, default 3000>]
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import {
  createNonceStore,
  type NonceStoreTables,
  nonceStoreMigrations,
} from "../src/nonce-store.js";
import { openStore, type Store } from "../src/store.js";
import { DEFAULT_TEST_DATABASE_URL } from "../src/testing.js";

const calls = Number(process.argv[2] ?? 3000);
const inFlight = 64;

async function measure(store: Store<NonceStoreTables>, label: string): Promise<void> {
  const nonces = createNonceStore(store);
  const tag = randomBytes(4).toString("hex");

  // Warm-up: connections, statement caches, the table's first pages.
  for (let i = 1; i <= 50; i += 1) {
    await nonces.advance(`warm-${tag}`, BigInt(i));
  }

  let started = performance.now();
  for (let i = 1; i <= calls; i += 1) {
    if (!(await nonces.advance(`seq-${tag}`, BigInt(i)))) {
      throw new Error("a greater nonce was refused");
    }
  }
  const sequential = calls / ((performance.now() - started) / 1000);

  // 64 workers, each its own caller with rising nonces, so every call is an accepted write.
  started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async (_, worker) => {
      for (let nonce = 1n; next < calls; nonce += 1n) {
        next += 1;
        if (!(await nonces.advance(`par-${tag}-${worker}`, nonce))) {
          throw new Error("a greater nonce was refused");
        }
      }
    }),
  );
  const parallel = calls / ((performance.now() - started) / 1000);

  // 64 workers, one caller: each call takes the next nonce when it is made, so arrival order is
  // nonce order and every call is accepted (what a verifier that keeps per-caller order sends).
  started = performance.now();
  let nonce = 0n;
  next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < calls) {
        next += 1;
        nonce += 1n;
        if (!(await nonces.advance(`one-${tag}`, nonce))) {
          throw new Error("a greater nonce was refused");
        }
      }
    }),
  );
  const oneCaller = calls / ((performance.now() - started) / 1000);

  const rate = (perSecond: number) => perSecond.toFixed(0).padStart(6);
  const columns = [
    `sequential ${rate(sequential)}/s`,
    `${inFlight} in flight, ${inFlight} callers ${rate(parallel)}/s`,
    `${inFlight} in flight, 1 caller ${rate(oneCaller)}/s`,
  ];
  console.log(`${label.padEnd(10)} ${columns.join("   ")}   (${calls} calls each)`);
}

async function benchSqlite(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), "tessera-nonce-bench-"));
  try {
    const store = await openStore<NonceStoreTables>({
      dataDir,
      fileName: "bench.sqlite",
      migrations: nonceStoreMigrations,
    });
    try {
      await measure(store, "sqlite");
    } finally {
      await store.close();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

async function benchPostgres(): Promise<void> {
  const databaseUrl = process.env.TEST_DATABASE_URL ?? DEFAULT_TEST_DATABASE_URL;
  const schema = `tessera_bench_${process.pid}_${randomBytes(4).toString("hex")}`;
  let store: Store<NonceStoreTables>;
  try {
    store = await openStore<NonceStoreTables>({
      databaseUrl,
      schema,
      dataDir: tmpdir(),
      fileName: "unused.sqlite",
      migrations: nonceStoreMigrations,
    });
  } catch (error) {
    console.log(`postgres   not measured: ${error instanceof Error ? error.message : error}`);
    return;
  }
  try {
    await measure(store, "postgres");
  } finally {
    await sql`drop schema ${sql.id(schema)} cascade`.execute(store.db);
    await store.close();
  }
}

await benchSqlite();
await benchPostgres();
