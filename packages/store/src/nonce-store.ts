import { AsyncResource } from "node:async_hooks";
import { type Kysely, type Migration, sql, type Transaction } from "kysely";
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
   * before, and says whether it was.
   *
   * Calls are group-committed: the calls made while a batch is being committed (or during the
   * same event-loop turn as the first one) form the next batch, which is one transaction. Calls
   * take effect in the order `advance` was called (the call itself fixes the order; nothing is
   * awaited before it), so of one caller's calls in a batch, a later one sees the earlier ones:
   * 1, 2, 3 all return `true`; 3, 2, 1 return `true`, `false`, `false`; of equal nonces only
   * the first returns `true`. Among concurrent calls with the same caller and nonce exactly one
   * gets `true`, on both stores and across processes sharing the database (rows are locked
   * within the transaction). Every promise settles only after its batch committed (and, on a
   * store opened with `sqliteDurability: "explicit"`, was synced), so a `true` is durable before
   * it is returned; when the batch's transaction fails, every call of the
   * batch rejects with its error and none of them is recorded.
   *
   * Rejects with RangeError, without joining a batch, for an empty caller or a nonce outside
   * 0..10^78-1.
   */
  advance(caller: string, nonce: bigint): Promise<boolean>;
  /** The highest nonce recorded for `caller` (committed), or undefined if none was. */
  highWater(caller: string): Promise<bigint | undefined>;
}

/** Most calls in one batch (the rest wait for the next): far below SQL parameter limits. */
const MAX_BATCH_CALLS = 512;

interface PendingAdvance {
  readonly caller: string;
  readonly nonce: bigint;
  readonly resolve: (accepted: boolean) => void;
  readonly reject: (error: unknown) => void;
}

interface Decision {
  /** Per call, in the order given: accepted or not. */
  readonly results: boolean[];
  /** The new high-water mark of every caller that accepted a call. */
  readonly raised: Map<string, bigint>;
}

/**
 * A {@link NonceStore} over `store`, whose migrations must include {@link nonceStoreMigrations}.
 * Create one per store and share it: each instance commits its own batches, one at a time.
 *
 * Never call `advance` from inside a `store.transaction()` callback: its batch runs in a
 * transaction of its own, outside the caller's async context (so the store cannot refuse it as
 * misuse), and on SQLite it would wait forever for the connection the awaiting callback holds.
 */
export function createNonceStore<DB extends NonceStoreTables>(store: Store<DB>): NonceStore {
  // The store's DB type includes ours; Kysely cannot see that through the generic.
  const nonces = store as unknown as Store<NonceStoreTables>;
  const db = nonces.db;
  let queue: PendingAdvance[] = [];
  let draining = false;

  /** Commits batches until the queue is empty; at most one batch of this instance in flight. */
  async function drain(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.length <= MAX_BATCH_CALLS ? queue : queue.slice(0, MAX_BATCH_CALLS);
      queue = queue.length <= MAX_BATCH_CALLS ? [] : queue.slice(MAX_BATCH_CALLS);
      await commit(batch);
      // Once the promise jobs this batch's settling started have run (a nextTick runs after
      // them): calls they made, e.g. a caller's next call waiting for this one, and calls that
      // arrived while a PostgreSQL commit was in flight form the next batch, started at once.
      await new Promise<void>((resume) => process.nextTick(resume));
    }
    draining = false;
  }
  // Batches run in the context createNonceStore was called in, never in the first caller's
  // (whose async-local state, such as a request's, must not leak into everyone's transaction).
  const startDrain = AsyncResource.bind(() => {
    void drain();
  });

  /** Runs `batch` as one transaction and settles every call of it. Never rejects. */
  async function commit(batch: readonly PendingAdvance[]): Promise<void> {
    let results: boolean[];
    try {
      const callers = new Set(batch.map((call) => call.caller));
      if (callers.size < batch.length) {
        results = await nonces.transaction((trx) => applyBatch(trx, batch));
      } else if (nonces.dialect === "sqlite" || batch.length === 1) {
        // One statement, its own transaction. It cannot deadlock: SQLite has one writer at a
        // time, and a one-row statement holds no lock while it waits for another.
        results = await applyDistinct(db, batch);
      } else {
        // Several rows: in a transaction only for its retry if it deadlocks with a concurrent
        // batch of another process (rows are written in one order, but not every batch's
        // locks are taken in that one order).
        results = await nonces.transaction((trx) => applyDistinct(trx, batch));
      }
      // On a store whose commits are durable only once synced (sqliteDurability "explicit"),
      // off the event loop; a no-op otherwise. Either way nothing is answered before it is durable.
      await nonces.sync();
    } catch (error) {
      for (const call of batch) call.reject(error);
      return;
    }
    batch.forEach((call, i) => {
      call.resolve(results[i] === true);
    });
  }

  return {
    advance(caller, nonce) {
      try {
        checkCaller(caller);
        checkNonce(nonce);
      } catch (error) {
        return Promise.reject(error);
      }
      return new Promise<boolean>((resolve, reject) => {
        queue.push({ caller, nonce, resolve, reject });
        if (!draining) {
          draining = true;
          // The first call after a pause waits for the rest of this event-loop turn (not a
          // microtask): calls completing in the same turn, e.g. other requests' signature checks,
          // share its batch. A SQLite commit blocks the loop, so they could not join one later.
          setImmediate(startDrain);
        }
      });
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

  /**
   * A batch with one call per caller (the common case: a caller whose calls wait for each other)
   * needs no read: one multi-row upsert that raises each mark only if the nonce is greater, the
   * single-call statement generalized. It is atomic on both stores: PostgreSQL locks each row (or
   * key being inserted) and re-checks the condition against the latest committed value, so of
   * concurrent equal nonces exactly one updates its row. A call is accepted if its row comes back.
   */
  async function applyDistinct(
    executor: Kysely<NonceStoreTables>,
    batch: readonly PendingAdvance[],
  ): Promise<boolean[]> {
    const rows = batch
      .map(({ caller, nonce }) => ({ caller, nonce: toMoney(nonce) }))
      .sort((a, b) => (a.caller < b.caller ? -1 : 1));
    const written = await upsertRaising(executor, rows).returning("caller").execute();
    const accepted = new Set(written.map((row) => row.caller));
    return batch.map((call) => accepted.has(call.caller));
  }

  /**
   * A batch where some caller has several calls: reads (and on PostgreSQL locks) the callers'
   * marks, decides every call in order in memory, then writes the raised marks: two or three
   * statements, plus two for callers whose first row another transaction inserted meanwhile.
   * Pure but for the database, so a retried transaction reruns it whole.
   */
  async function applyBatch(
    trx: Transaction<NonceStoreTables>,
    batch: readonly PendingAdvance[],
  ): Promise<boolean[]> {
    const callers = [...new Set(batch.map((call) => call.caller))].sort();
    const marks = await lockMarks(trx, callers);
    const { results, raised } = decide(batch, marks);
    const known = [...raised].filter(([caller]) => marks.has(caller));
    const fresh = [...raised].filter(([caller]) => !marks.has(caller));
    await raiseMarks(trx, known);
    if (fresh.length === 0) {
      return results;
    }
    // A caller without a row has no lock to take: insert its row, unless another transaction
    // (another process, or another NonceStore) inserted one since the read above. Never on
    // SQLite, where the transaction holds the database's write lock from its first statement.
    const inserted = await trx
      .insertInto("nonce_high_water")
      .values(fresh.map(([caller, mark]) => ({ caller, nonce: toMoney(mark) })))
      .onConflict((conflict) => conflict.column("caller").doNothing())
      .returning("caller")
      .execute();
    if (inserted.length === fresh.length) {
      return results;
    }
    const insertedCallers = new Set(inserted.map((row) => row.caller));
    const lost = new Set(fresh.map(([caller]) => caller).filter((c) => !insertedCallers.has(c)));
    // Their rows exist now and stay (rows are never deleted): lock them, decide those calls again.
    const lostMarks = await lockMarks(trx, [...lost]);
    const lostIndexes = batch.flatMap((call, i) => (lost.has(call.caller) ? [i] : []));
    const again = decide(
      lostIndexes.map((i) => batch[i] as PendingAdvance),
      lostMarks,
    );
    lostIndexes.forEach((batchIndex, i) => {
      results[batchIndex] = again.results[i] === true;
    });
    await raiseMarks(trx, [...again.raised]);
    return results;
  }

  /** The marks of `callers` (sorted), locked until the transaction ends (PostgreSQL). */
  async function lockMarks(
    trx: Transaction<NonceStoreTables>,
    callers: readonly string[],
  ): Promise<Map<string, bigint>> {
    const query = trx
      .selectFrom("nonce_high_water")
      .select(["caller", "nonce"])
      .where("caller", "in", callers);
    // Locks rows in byte order, the order every batch's writes take (fewer deadlocks to retry).
    const rows =
      nonces.dialect === "postgres"
        ? await nonces.forUpdate(query.orderBy(sql`caller collate "C"`)).execute()
        : await query.execute();
    return new Map(rows.map((row) => [row.caller, fromMoney(row.nonce)]));
  }

  /** Writes marks of callers whose rows this transaction has locked; only ever raises them. */
  async function raiseMarks(
    trx: Transaction<NonceStoreTables>,
    marks: ReadonlyArray<readonly [string, bigint]>,
  ): Promise<void> {
    if (marks.length === 0) {
      return;
    }
    await upsertRaising(
      trx,
      marks.map(([caller, mark]) => ({ caller, nonce: toMoney(mark) })),
    ).execute();
  }
}

/** `rows` (one per caller) inserted, or raising the caller's mark where theirs is greater. */
function upsertRaising(
  db: Kysely<NonceStoreTables>,
  rows: ReadonlyArray<{ caller: string; nonce: Money }>,
) {
  return db
    .insertInto("nonce_high_water")
    .values(rows)
    .onConflict((conflict) =>
      conflict
        .column("caller")
        .doUpdateSet((eb) => ({ nonce: eb.ref("excluded.nonce") }))
        .where("nonce_high_water.nonce", "<", (eb) => eb.ref("excluded.nonce")),
    );
}

/** Each call in order against the running high-water of its caller, starting from `marks`. */
function decide(calls: readonly PendingAdvance[], marks: ReadonlyMap<string, bigint>): Decision {
  const high = new Map(marks);
  const raised = new Map<string, bigint>();
  const results = calls.map(({ caller, nonce }) => {
    const mark = high.get(caller);
    if (mark !== undefined && nonce <= mark) {
      return false;
    }
    high.set(caller, nonce);
    raised.set(caller, nonce);
    return true;
  });
  return { results, raised };
}

function checkCaller(caller: string): void {
  if (typeof caller !== "string" || caller.length === 0) {
    throw new RangeError("caller must be a non-empty string");
  }
}

function checkNonce(nonce: bigint): void {
  if (typeof nonce !== "bigint" || nonce < 0n || nonce > MONEY_MAX) {
    throw new RangeError("nonce must be between 0 and 10^78 - 1");
  }
}
