/**
 * The compute nodes registered with this job server: their sealed records, what the job server
 * observed of them (last contact, load, counters) and how many leases each may hold. No Connect
 * here; refusals are {@link JobServerError}s.
 */
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { findNodeRecordProblem } from "@tessera/identity/node-record";
import {
  type NodeLoad,
  NodeLoadSchema,
  type NodeRecord,
  NodeRecordSchema,
  type NodeStanding,
  NodeStandingSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { fromMoney, type Store, toMoney } from "@tessera/store";
import type { Selectable } from "kysely";
import { invalidArgument, JobServerError } from "../errors.js";
import { fromBase64, toBase64 } from "../jobs/job-row.js";
import { PROTOCOL_VERSION } from "../protocol-version.js";
import type { JobNodeTable, JobServerTables } from "../store/tables.js";

/** A registered node as the job server knows it. */
export interface NodeEntry {
  readonly address: string;
  readonly record: NodeRecord;
  readonly load: NodeLoad | undefined;
  /** Leases the node may hold at once now. */
  readonly capacity: number;
  readonly online: boolean;
  readonly registeredAtMs: number;
  readonly lastSeenMs: number;
  readonly reputation: number;
  readonly bannedUntilMs: number | undefined;
  readonly jobsCompleted: number;
  readonly jobsFailed: number;
  readonly computeTimeMs: number;
  readonly earnedAmount: bigint;
}

/** Facts about a node from elsewhere (the registry) applied at registration. */
export interface NodeStandingHint {
  readonly reputation?: number | undefined;
  readonly bannedUntilMs?: number | undefined;
}

/** What {@link createNodeBook} needs. */
export interface NodeBookOptions {
  readonly store: Store<JobServerTables>;
  readonly now: () => number;
  /** Least proof-of-work difficulty of a node record. */
  readonly minPowDifficulty: number;
  /** A node silent this long is offline (and its leases lapse). */
  readonly offlineAfterMs: number;
}

/** The node book; see the module comment. */
export interface NodeBook {
  /**
   * Registers `record` for `caller`, or replaces the registered record with a newer one (higher
   * sequence); the same record again is accepted as it is.
   * @throws JobServerError invalid_argument (bad record, naming the problem), permission_denied
   * (the record is not the caller's, or the node is banned), failed_precondition (an older or
   * conflicting sequence).
   */
  register(
    caller: string,
    record: NodeRecord | undefined,
    hint?: NodeStandingHint,
  ): Promise<NodeEntry>;
  /** The node, or undefined when never registered. */
  get(address: string): Promise<NodeEntry | undefined>;
  /**
   * Records a contact with its load (when given): online, last seen now, and the capacity that
   * load implies. Undefined when the node is not registered.
   */
  reportLoad(address: string, load: NodeLoad | undefined): Promise<NodeEntry | undefined>;
  /** Records a contact without a load report (progress, results): online, last seen now. */
  touch(address: string): Promise<void>;
  /** Marks nodes silent past the timeout offline; returns their addresses. */
  markOffline(): Promise<string[]>;
  /** Leases the node holds now (ASSIGNED or RUNNING jobs). */
  activeLeaseCount(address: string): Promise<number>;
  /** Adds `amount` to what the node earned. */
  addEarnings(address: string, amount: bigint): Promise<void>;
}

const PRICE = /^(0|[1-9][0-9]{0,77})?$/;

/** The NodeStanding of `entry` as this job server observed it. */
export function standingOf(entry: NodeEntry): NodeStanding {
  return create(NodeStandingSchema, {
    reputation: entry.reputation,
    jobsCompleted: BigInt(entry.jobsCompleted),
    computeSeconds: BigInt(Math.floor(entry.computeTimeMs / 1000)),
    online: entry.online,
    lastHeartbeatAt: timestampFromMs(entry.lastSeenMs),
    ...(entry.bannedUntilMs === undefined
      ? {}
      : { bannedUntil: timestampFromMs(entry.bannedUntilMs) }),
  });
}

function entryFromDb(row: Selectable<JobNodeTable>): NodeEntry {
  return {
    address: row.address,
    record: fromBinary(NodeRecordSchema, fromBase64(row.record)),
    load: row.load === null ? undefined : fromBinary(NodeLoadSchema, fromBase64(row.load)),
    capacity: row.capacity,
    online: row.online === 1,
    registeredAtMs: Number(row.registered_at_ms),
    lastSeenMs: Number(row.last_seen_ms),
    reputation: row.reputation,
    bannedUntilMs: row.banned_until_ms === null ? undefined : Number(row.banned_until_ms),
    jobsCompleted: Number(row.jobs_completed),
    jobsFailed: Number(row.jobs_failed),
    computeTimeMs: Number(row.compute_time_ms),
    earnedAmount: fromMoney(row.earned_amount),
  };
}

/** Leases a node may hold when it has not reported a load: its record's concurrency (0 = 1). */
function recordCapacity(record: NodeRecord): number {
  return record.maxConcurrentJobs > 0 ? record.maxConcurrentJobs : 1;
}

/** Checks a node record for registration. */
function checkRecord(caller: string, record: NodeRecord | undefined, minPowDifficulty: number) {
  if (record === undefined) throw invalidArgument("record", "is required");
  if (record.address !== caller) {
    throw new JobServerError(
      "permission_denied",
      "record.address must be the signed caller: a node registers only itself",
    );
  }
  if (record.protocolVersion === undefined) {
    throw invalidArgument("record.protocol_version", "is required");
  }
  if (record.protocolVersion.major !== PROTOCOL_VERSION.major) {
    throw new JobServerError(
      "failed_precondition",
      `record.protocol_version: ${record.protocolVersion.major}.x is not compatible with this job server's ${PROTOCOL_VERSION.major}.x`,
    );
  }
  if (record.nodeType !== NodeType.COMPUTE) {
    throw invalidArgument("record.node_type", "must be NODE_TYPE_COMPUTE");
  }
  if (!PRICE.test(record.pricePerHour)) {
    throw invalidArgument("record.price_per_hour", "must be a decimal string of base units");
  }
  const problem = findNodeRecordProblem(record, { minPowDifficulty });
  if (problem !== undefined) throw invalidArgument("record", problem);
}

/** The node book over `options.store`. */
export function createNodeBook(options: NodeBookOptions): NodeBook {
  const { store, now, minPowDifficulty, offlineAfterMs } = options;
  const db = store.db;

  async function read(address: string): Promise<NodeEntry | undefined> {
    const row = await db
      .selectFrom("job_node")
      .selectAll()
      .where("address", "=", address)
      .executeTakeFirst();
    return row === undefined ? undefined : entryFromDb(row);
  }

  async function activeLeaseCount(address: string): Promise<number> {
    const row = await db
      .selectFrom("job_lease")
      .select((eb) => eb.fn.countAll<number | string>().as("n"))
      .where("node_address", "=", address)
      .where("state", "=", "active")
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  return {
    async register(caller, record, hint = {}) {
      checkRecord(caller, record, minPowDifficulty);
      const sealed = record as NodeRecord;
      const at = now();
      const banned = hint.bannedUntilMs !== undefined && hint.bannedUntilMs > at;
      if (banned) {
        throw new JobServerError(
          "permission_denied",
          `node ${caller} is banned until ${new Date(hint.bannedUntilMs as number).toISOString()}`,
        );
      }
      await store.transaction(async (trx) => {
        const existing = await store
          .forUpdate(trx.selectFrom("job_node").selectAll().where("address", "=", caller))
          .executeTakeFirst();
        const encoded = toBase64(toBinary(NodeRecordSchema, sealed));
        if (existing !== undefined) {
          const registered = fromMoney(existing.sequence);
          if (sealed.sequence < registered) {
            throw new JobServerError(
              "failed_precondition",
              `record.sequence ${sealed.sequence} is older than the registered ${registered}`,
            );
          }
          if (sealed.sequence === registered) {
            const same = equals(
              NodeRecordSchema,
              fromBinary(NodeRecordSchema, fromBase64(existing.record)),
              sealed,
            );
            if (!same) {
              throw new JobServerError(
                "failed_precondition",
                `record.sequence ${sealed.sequence} is already registered with other content; raise the sequence`,
              );
            }
          }
          await trx
            .updateTable("job_node")
            .set({
              record: encoded,
              sequence: toMoney(sealed.sequence),
              last_seen_ms: at,
              online: 1,
              capacity: recordCapacity(sealed),
              ...(hint.reputation === undefined ? {} : { reputation: hint.reputation }),
              banned_until_ms: hint.bannedUntilMs ?? null,
            })
            .where("address", "=", caller)
            .execute();
          return;
        }
        await trx
          .insertInto("job_node")
          .values({
            address: caller,
            record: encoded,
            sequence: toMoney(sealed.sequence),
            registered_at_ms: at,
            last_seen_ms: at,
            load: null,
            capacity: recordCapacity(sealed),
            online: 1,
            reputation: hint.reputation ?? 0.5,
            banned_until_ms: hint.bannedUntilMs ?? null,
            jobs_completed: 0,
            jobs_failed: 0,
            compute_time_ms: 0,
            earned_amount: toMoney(0n),
          })
          .onConflict((conflict) => conflict.column("address").doNothing())
          .execute();
      });
      const entry = await read(caller);
      if (entry === undefined) throw new Error(`node ${caller} vanished`);
      return entry;
    },

    get: read,

    async reportLoad(address, load) {
      const entry = await read(address);
      if (entry === undefined) return undefined;
      const at = now();
      let capacity = entry.capacity;
      if (load !== undefined) {
        const held = await activeLeaseCount(address);
        capacity = held + load.freeSlots;
        if (entry.record.maxConcurrentJobs > 0) {
          capacity = Math.min(capacity, entry.record.maxConcurrentJobs);
        }
      }
      await db
        .updateTable("job_node")
        .set({
          last_seen_ms: at,
          online: 1,
          capacity,
          ...(load === undefined ? {} : { load: toBase64(toBinary(NodeLoadSchema, load)) }),
        })
        .where("address", "=", address)
        .execute();
      return { ...entry, lastSeenMs: at, online: true, capacity, load: load ?? entry.load };
    },

    async touch(address) {
      await db
        .updateTable("job_node")
        .set({ last_seen_ms: now(), online: 1 })
        .where("address", "=", address)
        .execute();
    },

    async markOffline() {
      const rows = await db
        .updateTable("job_node")
        .set({ online: 0 })
        .where("online", "=", 1)
        .where("last_seen_ms", "<", now() - offlineAfterMs)
        .returning("address")
        .execute();
      return rows.map((row) => row.address);
    },

    activeLeaseCount,

    async addEarnings(address, amount) {
      if (amount <= 0n) return;
      await store.transaction(async (trx) => {
        const row = await store
          .forUpdate(
            trx.selectFrom("job_node").select("earned_amount").where("address", "=", address),
          )
          .executeTakeFirst();
        if (row === undefined) return;
        await trx
          .updateTable("job_node")
          .set({ earned_amount: toMoney(fromMoney(row.earned_amount) + amount) })
          .where("address", "=", address)
          .execute();
      });
    },
  };
}
