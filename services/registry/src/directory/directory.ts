/**
 * The registry's node directory: signed node records with proof of work, heartbeats and
 * liveness, owner-only deregistration with tombstones, discovery, reputation with strikes and
 * growing bans, and the validator set. Durable on @tessera/store (SQLite or PostgreSQL); time
 * comes from an injected clock. Imports nothing from Connect: errors are {@link DirectoryError}s.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { addressFromPublicKey, isAddress, PUBLIC_KEY_BYTES } from "@tessera/identity/address";
import { sha3_256, toHex } from "@tessera/identity/hash";
import { findNodeRecordProblem, verifyNodeRecordPow } from "@tessera/identity/node-record";
import {
  type NodeLoad,
  NodeLoadSchema,
  type NodeRecord,
  NodeRecordSchema,
  type NodeStanding,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type NodeEntry,
  NodeEventKind,
  type ValidatorInfo,
  type ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { type Store, toMoney } from "@tessera/store";
import type { Transaction } from "kysely";
import { toBase64 } from "./base64.js";
import { DirectoryError, RaceLostError } from "./errors.js";
import { entryOf, isBanned, msOf, type NodeRow, recordOf, standingOf } from "./node-entry.js";
import {
  compareEntries,
  entryMatches,
  maxResultsOf,
  type NodeFilter,
  recordMatches,
} from "./node-filter.js";
import { checkProtocolVersion } from "./protocol-version.js";
import {
  applyNodeEvent,
  type BanPolicy,
  DEFAULT_BAN_PERIODS_MS,
  DEFAULT_STRIKES_PER_BAN,
  INITIAL_REPUTATION,
  type ValidatorEvent,
} from "./reputation.js";
import { transactionWithRaceRetry } from "./retry-race.js";
import type { ValidatorStakeOptions } from "./stakes.js";
import type { RegistryTables } from "./tables.js";
import {
  createValidatorSet,
  type ValidatorPage,
  type ValidatorPageRequest,
  type ValidatorSlash,
} from "./validator-set.js";

/** Default interval between a node's heartbeats. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 10_000;

/** What {@link createDirectory} needs. */
export interface DirectoryOptions<DB extends RegistryTables = RegistryTables> {
  /** The registry's store; its migrations must include `registryMigrations`. */
  readonly store: Store<DB>;
  /** The time; default the system clock. Tests inject a fake one. */
  readonly clock?: (() => Date) | undefined;
  /** Least proof-of-work difficulty (leading zero bits) a node record must meet. */
  readonly powDifficulty: number;
  /** Interval between heartbeats the registry asks nodes for; default 10,000 ms. */
  readonly heartbeatIntervalMs?: number | undefined;
  /** A node without a heartbeat for this long is offline; default 3 heartbeat intervals. */
  readonly heartbeatTimeoutMs?: number | undefined;
  /** Length of the first, second, ... ban (the last repeats); default 24 h, 48 h, 168 h. */
  readonly banPeriodsMs?: readonly number[] | undefined;
  /** Every this many strikes bans the node; default 3. */
  readonly strikesPerBan?: number | undefined;
  /** Least stake a validator must commit, in base units; default 0. Above 0 needs `validatorStakes`. */
  readonly minValidatorStake?: bigint | undefined;
  /**
   * The wallet's stakes, which back validators (checked at registration, returned after they
   * leave, slashed for provable misbehaviour). Undefined when the registry has no wallet: then
   * validators register only with stake 0.
   */
  readonly validatorStakes?: ValidatorStakeOptions | undefined;
  /**
   * Addresses allowed to report node events besides the active validators (the job servers;
   * gateways through {@link isKnownReporter}).
   */
  readonly trustedReporters?: readonly string[] | undefined;
  /** Further reporters the registry knows, e.g. gateways of its subnets. Default none. */
  readonly isKnownReporter?: ((address: string) => Promise<boolean>) | undefined;
}

/** One observation about a node (ReportNodeEvent). */
export interface NodeEventReport {
  /** Reporter-chosen id, 1-128 characters; a repeated id from the same reporter applies once. */
  readonly eventId: string;
  /** Who reports it (the signed caller). */
  readonly reporter: string;
  readonly kind: NodeEventKind;
  /** The job or inference request it concerns; at most 256 characters. */
  readonly requestId?: string | undefined;
  /** For JOB_COMPLETED: compute time spent, in milliseconds. */
  readonly computeTimeMs?: bigint | number | undefined;
  /** Human-readable detail, at most 512 characters (kept out of the store and the logs). */
  readonly detail?: string | undefined;
}

/** Outcome of {@link Directory.acceptRecord}. */
export type AcceptOutcome = "accepted" | "stale";

/**
 * The registry's directory and validator set. Every method may throw {@link DirectoryError};
 * anything else is a bug or a store failure.
 */
export interface Directory {
  /** Interval between heartbeats the registry asks nodes for, in milliseconds. */
  readonly heartbeatIntervalMs: number;
  /** Heartbeat silence after which a node is offline, in milliseconds. */
  readonly heartbeatTimeoutMs: number;
  /** Least proof-of-work difficulty accepted. */
  readonly powDifficulty: number;

  /**
   * Takes a record from anywhere (RegisterNode, gossip): checks protocol version, node type,
   * key/address, proof of work and signature, then keeps it if its `sequence` is higher than
   * the stored one's (or the node is new). "stale" when it is not newer (the same record again,
   * an older one, the same sequence with other content, or at most a deregistered node's last
   * sequence): nothing changed.
   * @throws DirectoryError "invalid" / "bad_signature" / "failed_precondition" for a bad record,
   * "banned" while the node is banned.
   */
  acceptRecord(record: NodeRecord): Promise<AcceptOutcome>;
  /**
   * RegisterNode: {@link acceptRecord} with the contract's strict answers: the signed `caller`
   * must be the record's address ("permission_denied"), the same record again returns the entry,
   * an older one is "stale", the same sequence with other content "conflict".
   */
  registerNode(record: NodeRecord, caller: string): Promise<NodeEntry>;
  /** The node's entry, or undefined when it is unknown or deregistered. */
  getEntry(address: string): Promise<NodeEntry | undefined>;
  /**
   * Marks the node online and records its load; returns its standing.
   * @throws "permission_denied" when `caller` is given and is not `address`; "not_found" for an
   * unknown or deregistered node; "banned".
   */
  heartbeat(address: string, load: NodeLoad | undefined, caller?: string): Promise<NodeStanding>;
  /**
   * Removes the node, keeping a tombstone with its sequence and standing. Only the node itself
   * may (`caller` = `address`). Returns when it was removed: the first removal's time when
   * called again.
   * @throws "permission_denied", "not_found", "invalid" for a reason over 256 characters.
   */
  deregister(address: string, caller: string, reason?: string): Promise<Date>;
  /**
   * Live entries matching every filter, best first (online, reputation, free slots), at most
   * `maxResults`. Type, subnet, reputation and liveness filter in SQL; devices, runtimes, models
   * and capabilities are inside the signed record and filter in memory, so a discovery reads
   * every candidate row: fine for thousands of nodes, worth an index table beyond that.
   */
  findNodes(filter: NodeFilter): Promise<NodeEntry[]>;
  /** Closes the online session of nodes silent for the timeout; returns their addresses. */
  markOffline(): Promise<string[]>;
  /** Every live node's record, for gossip. */
  allRecords(): Promise<NodeRecord[]>;
  /**
   * What the signed-request verifier's `authorizeCaller` needs: "blacklisted" while `address`
   * is a banned node, else "ok" (registration is never required: RegisterNode is how a node
   * first arrives).
   */
  callerStanding(address: string): Promise<"ok" | "blacklisted">;
  /**
   * Applies an observation about a node and returns its standing. Reporters: the active
   * validators, `trustedReporters`, and whoever `isKnownReporter` admits; never the node itself.
   * Applies to deregistered nodes too (leaving does not clear strikes).
   * @throws "permission_denied" for other reporters, "not_found" for a never-registered node,
   * "invalid" for bad fields, "conflict" for a reused event id with other content.
   */
  reportEvent(address: string, event: NodeEventReport): Promise<NodeStanding>;

  /**
   * Adds a validator (and its record to the directory), ACTIVE. Idempotent for the same record
   * and stake; a newer record updates its public key and endpoint; re-registering an INACTIVE validator
   * activates it with the new stake. A stake above 0 must be, in the wallet, a locked stake of the
   * validator naming this registry as arbiter and holding at least `stakeAmount`; stake 0 comes
   * with an empty `stakeId`.
   * @throws "invalid" (not a validator record, no endpoint, stake below the minimum or not a
   * decimal, bad stake id), "permission_denied" (`caller` given and not the record's address,
   * slashed, or another address's stake), "failed_precondition" (no such locked stake with this
   * arbiter and amount, a stake that backed an earlier registration, or no wallet), "unavailable"
   * (wallet unreachable), "conflict" (active with another stake), and {@link acceptRecord}'s
   * errors.
   */
  registerValidator(
    record: NodeRecord,
    stakeAmount: bigint | string,
    stakeId: string,
    caller?: string,
  ): Promise<ValidatorInfo>;
  /**
   * Sets the validator INACTIVE; only itself may. Its stake is owed back and unlocked in the
   * wallet once no approval it signed is open: at once when none is (its `stakeAmount` then reads
   * 0), else by {@link releaseDueStakes}. Idempotent; calling it again retries a failed unlock.
   * @throws "permission_denied", "not_found", "invalid" (reason over 256 characters),
   * "unavailable" (the validator is INACTIVE but the wallet could not unlock its stake yet).
   */
  unregisterValidator(address: string, caller: string, reason?: string): Promise<ValidatorInfo>;
  /**
   * Slashes an active validator's stake for the treasury; below the minimum it becomes SLASHED
   * (out of the active set for good) and what remains is owed back. An inactive or unstaked
   * validator is returned unchanged.
   * @throws "not_found", "failed_precondition" (no wallet), and the wallet's errors.
   */
  slashValidator(address: string, slash: ValidatorSlash): Promise<ValidatorInfo>;
  /** Unlocks every owed validator stake that is due; returns their stake ids. */
  releaseDueStakes(): Promise<string[]>;
  /** One validator, or undefined. */
  getValidator(address: string): Promise<ValidatorInfo | undefined>;
  /** Every validator (in `status`, when given), ordered by address. */
  listValidators(filter?: {
    readonly status?: ValidatorStatus | undefined;
  }): Promise<ValidatorInfo[]>;
  /** One page of validators, ordered by address. */
  listValidatorPage(request: ValidatorPageRequest): Promise<ValidatorPage>;
  /**
   * Moves a validator's reputation after it signed ("ok"), timed out or signed wrongly; a wrong
   * signature also slashes its stake when `validatorStakes.slashPerInvalidSignature` is above 0.
   */
  reportValidatorEvent(address: string, event: ValidatorEvent): Promise<ValidatorInfo>;
}

const MAX_EVENT_ID = 128;
const MAX_REQUEST_ID = 256;
const MAX_DETAIL = 512;
const MAX_REASON = 256;

/** Internal outcome of applying a record inside a transaction. */
type RecordOutcome = "accepted" | "unchanged" | "stale" | "conflict";

/** Opens the directory over `options.store`. Holds no resources of its own. */
export function createDirectory<DB extends RegistryTables>(
  options: DirectoryOptions<DB>,
): Directory {
  // The store's DB type includes our tables; Kysely cannot see that through the generic.
  const store = options.store as unknown as Store<RegistryTables>;
  const clock = options.clock ?? (() => new Date());
  const powDifficulty = options.powDifficulty;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 3 * heartbeatIntervalMs;
  const banPolicy: BanPolicy = {
    strikesPerBan: options.strikesPerBan ?? DEFAULT_STRIKES_PER_BAN,
    banPeriodsMs: options.banPeriodsMs ?? DEFAULT_BAN_PERIODS_MS,
  };
  if (banPolicy.banPeriodsMs.length === 0 || banPolicy.strikesPerBan < 1) {
    throw new RangeError("banPeriodsMs needs at least one period and strikesPerBan at least 1");
  }
  const trustedReporters = new Set(options.trustedReporters ?? []);
  const nowMs = () => clock().getTime();

  const inTransaction = <T>(fn: (trx: Transaction<RegistryTables>) => Promise<T>) =>
    transactionWithRaceRetry(store, fn);

  async function lockNode(trx: Transaction<RegistryTables>, address: string) {
    return store
      .forUpdate(trx.selectFrom("registry_node").selectAll().where("address", "=", address))
      .executeTakeFirst();
  }

  function checkRecord(record: NodeRecord): void {
    checkProtocolVersion(record.protocolVersion, "node record");
    if (record.nodeType === NodeType.UNSPECIFIED || NodeType[record.nodeType] === undefined) {
      throw new DirectoryError("invalid", "node record: node_type is required");
    }
    const problem = findNodeRecordProblem(record, { minPowDifficulty: powDifficulty });
    if (problem === undefined) return;
    // The checks run key, address, proof of work, then signature: when the others hold, the
    // signature is what failed, and the contract answers that one UNAUTHENTICATED.
    const signatureOnly =
      record.publicKey.length === PUBLIC_KEY_BYTES &&
      addressFromPublicKey(record.publicKey) === record.address &&
      verifyNodeRecordPow(record, powDifficulty);
    throw new DirectoryError(
      signatureOnly ? "bad_signature" : "invalid",
      `node record: ${problem}`,
    );
  }

  /** Stores `record` if it is newer; the caller checked it and holds a transaction. */
  async function applyRecord(
    trx: Transaction<RegistryTables>,
    record: NodeRecord,
    now: number,
  ): Promise<{ outcome: RecordOutcome; row: NodeRow }> {
    const bytes = toBase64(toBinary(NodeRecordSchema, record));
    const row = await lockNode(trx, record.address);
    if (row === undefined) {
      const fresh = {
        address: record.address,
        record: bytes,
        sequence: toMoney(record.sequence),
        node_type: record.nodeType,
        subnet_id: record.subnetId.toString(),
        registered_at_ms: now,
        updated_at_ms: now,
        deregistered_at_ms: null,
        deregister_reason: null,
        reputation: INITIAL_REPUTATION,
        jobs_completed: 0,
        compute_ms: 0,
        strikes: 0,
        bans: 0,
        banned_until_ms: null,
        stake_amount: toMoney(0n),
        online: 0,
        online_since_ms: null,
        online_total_ms: 0,
        last_heartbeat_at_ms: null,
        load: null,
      };
      const inserted = await trx
        .insertInto("registry_node")
        .values(fresh)
        .onConflict((conflict) => conflict.column("address").doNothing())
        .executeTakeFirst();
      if (inserted.numInsertedOrUpdatedRows !== 1n) throw new RaceLostError();
      return { outcome: "accepted", row: fresh };
    }
    if (isBanned(row, now)) throw bannedError(row);
    const stored = BigInt(row.sequence);
    const deregistered = row.deregistered_at_ms !== null;
    if (record.sequence < stored) return { outcome: "stale", row };
    if (record.sequence === stored) {
      if (deregistered) return { outcome: "stale", row };
      return { outcome: row.record === bytes ? "unchanged" : "conflict", row };
    }
    const update = {
      record: bytes,
      sequence: toMoney(record.sequence),
      node_type: record.nodeType,
      subnet_id: record.subnetId.toString(),
      updated_at_ms: now,
      deregistered_at_ms: null,
      deregister_reason: null,
    };
    await trx.updateTable("registry_node").set(update).where("address", "=", row.address).execute();
    return { outcome: "accepted", row: { ...row, ...update } };
  }

  async function checkReporter(reporter: string, address: string): Promise<void> {
    if (reporter === address) {
      throw new DirectoryError("permission_denied", "a node cannot report events about itself");
    }
    if (trustedReporters.has(reporter)) return;
    if (await validators.isActive(reporter)) return;
    if (options.isKnownReporter !== undefined && (await options.isKnownReporter(reporter))) return;
    throw new DirectoryError(
      "permission_denied",
      `${reporter} may not report node events: only active validators, gateways and job servers known to the registry may`,
    );
  }

  const validators = createValidatorSet({
    store,
    nowMs,
    minStake: options.minValidatorStake ?? 0n,
    stakes: options.validatorStakes,
    checkRecord,
    applyRecord: (trx, record, now) => applyRecord(trx, record, now),
    inTransaction,
  });

  return {
    heartbeatIntervalMs,
    heartbeatTimeoutMs,
    powDifficulty,

    async acceptRecord(record) {
      checkRecord(record);
      const { outcome } = await inTransaction((trx) => applyRecord(trx, record, nowMs()));
      return outcome === "accepted" ? "accepted" : "stale";
    },

    async registerNode(record, caller) {
      if (caller !== record.address) {
        throw new DirectoryError(
          "permission_denied",
          `the caller ${caller} is not the record's address ${record.address}`,
        );
      }
      checkRecord(record);
      const now = nowMs();
      const { outcome, row } = await inTransaction((trx) => applyRecord(trx, record, now));
      if (outcome === "stale") {
        throw new DirectoryError(
          "stale",
          row.deregistered_at_ms === null
            ? `record sequence ${record.sequence} is older than the registered ${BigInt(row.sequence)}`
            : `node was deregistered at sequence ${BigInt(row.sequence)}: re-register with a higher sequence`,
        );
      }
      if (outcome === "conflict") {
        throw new DirectoryError(
          "conflict",
          `a different record with sequence ${record.sequence} is already registered`,
        );
      }
      return entryOf(row, now, heartbeatTimeoutMs);
    },

    async getEntry(address) {
      const row = await store.db
        .selectFrom("registry_node")
        .selectAll()
        .where("address", "=", address)
        .where("deregistered_at_ms", "is", null)
        .executeTakeFirst();
      return row === undefined ? undefined : entryOf(row, nowMs(), heartbeatTimeoutMs);
    },

    async heartbeat(address, load, caller) {
      if (caller !== undefined && caller !== address) {
        throw new DirectoryError(
          "permission_denied",
          `the caller ${caller} may not send heartbeats for ${address}`,
        );
      }
      const now = nowMs();
      const loadBytes = toBase64(toBinary(NodeLoadSchema, load ?? create(NodeLoadSchema)));
      const row = await store.transaction(async (trx) => {
        const row = await lockNode(trx, address);
        if (row === undefined || row.deregistered_at_ms !== null) {
          throw new DirectoryError("not_found", `node ${address} is not registered`);
        }
        if (isBanned(row, now)) throw bannedError(row);
        const last = msOf(row.last_heartbeat_at_ms);
        const since = msOf(row.online_since_ms);
        const live = row.online === 1 && last !== null && now - last <= heartbeatTimeoutMs;
        let onlineSince = since ?? now;
        let onlineTotal = Number(row.online_total_ms);
        if (!live) {
          // A lapsed session the sweep has not closed yet: close it first.
          onlineTotal = closedSession(row, now, heartbeatTimeoutMs).online_total_ms;
          onlineSince = now;
        }
        const update = {
          online: 1,
          online_since_ms: onlineSince,
          online_total_ms: onlineTotal,
          last_heartbeat_at_ms: now,
          load: loadBytes,
        };
        await trx.updateTable("registry_node").set(update).where("address", "=", address).execute();
        return { ...row, ...update };
      });
      return standingOf(row, now, heartbeatTimeoutMs);
    },

    async deregister(address, caller, reason = "") {
      if (caller !== address) {
        throw new DirectoryError(
          "permission_denied",
          `only the node itself may deregister ${address}`,
        );
      }
      if (reason.length > MAX_REASON) {
        throw new DirectoryError("invalid", `reason is longer than ${MAX_REASON} characters`);
      }
      const now = nowMs();
      const removedAt = await store.transaction(async (trx) => {
        const row = await lockNode(trx, address);
        if (row === undefined) {
          throw new DirectoryError("not_found", `node ${address} is not registered`);
        }
        const already = msOf(row.deregistered_at_ms);
        if (already !== null) return already;
        await trx
          .updateTable("registry_node")
          .set({
            deregistered_at_ms: now,
            deregister_reason: reason,
            ...closedSession(row, now, heartbeatTimeoutMs),
          })
          .where("address", "=", address)
          .execute();
        return now;
      });
      return new Date(removedAt);
    },

    async findNodes(filter) {
      const now = nowMs();
      let query = store.db
        .selectFrom("registry_node")
        .selectAll()
        .where("deregistered_at_ms", "is", null);
      if (filter.nodeType) query = query.where("node_type", "=", filter.nodeType);
      if (filter.subnetId !== undefined) {
        query = query.where("subnet_id", "=", filter.subnetId.toString());
      }
      if (filter.minReputation) query = query.where("reputation", ">=", filter.minReputation);
      if (filter.onlineOnly) {
        query = query
          .where("online", "=", 1)
          .where("last_heartbeat_at_ms", ">=", now - heartbeatTimeoutMs);
      }
      const rows = await query.execute();
      const matches: NodeEntry[] = [];
      for (const row of rows) {
        const record = recordOf(row);
        if (!recordMatches(record, filter)) continue;
        const entry = entryOf(row, now, heartbeatTimeoutMs);
        if (entryMatches(entry, filter)) matches.push(entry);
      }
      return matches.sort(compareEntries).slice(0, maxResultsOf(filter));
    },

    async markOffline() {
      const now = nowMs();
      return store.transaction(async (trx) => {
        const lapsed = await store
          .forUpdate(
            trx
              .selectFrom("registry_node")
              .selectAll()
              .where("online", "=", 1)
              .where("last_heartbeat_at_ms", "<", now - heartbeatTimeoutMs),
          )
          .execute();
        for (const row of lapsed) {
          await trx
            .updateTable("registry_node")
            .set(closedSession(row, now, heartbeatTimeoutMs))
            .where("address", "=", row.address)
            .execute();
        }
        return lapsed.map((row) => row.address);
      });
    },

    async allRecords() {
      const rows = await store.db
        .selectFrom("registry_node")
        .selectAll()
        .where("deregistered_at_ms", "is", null)
        .orderBy("address")
        .execute();
      return rows.map(recordOf);
    },

    async callerStanding(address) {
      const row = await store.db
        .selectFrom("registry_node")
        .select("banned_until_ms")
        .where("address", "=", address)
        .executeTakeFirst();
      const until = row === undefined ? null : msOf(row.banned_until_ms);
      return until !== null && until > nowMs() ? "blacklisted" : "ok";
    },

    async reportEvent(address, event) {
      checkEvent(address, event);
      await checkReporter(event.reporter, address);
      const computeTimeMs =
        event.kind === NodeEventKind.JOB_COMPLETED ? Number(event.computeTimeMs ?? 0) : 0;
      const fingerprint = toHex(
        sha3_256(
          new TextEncoder().encode(
            JSON.stringify([address, event.kind, event.requestId ?? "", computeTimeMs]),
          ),
        ),
      );
      const now = nowMs();
      const row = await inTransaction(async (trx) => {
        const row = await lockNode(trx, address);
        if (row === undefined) {
          throw new DirectoryError("not_found", `node ${address} is not registered`);
        }
        const inserted = await trx
          .insertInto("registry_node_event")
          .values({
            reporter: event.reporter,
            event_id: event.eventId,
            node_address: address,
            kind: event.kind,
            fingerprint,
            recorded_at_ms: now,
          })
          .onConflict((conflict) => conflict.columns(["reporter", "event_id"]).doNothing())
          .executeTakeFirst();
        if (inserted.numInsertedOrUpdatedRows !== 1n) {
          const earlier = await trx
            .selectFrom("registry_node_event")
            .select("fingerprint")
            .where("reporter", "=", event.reporter)
            .where("event_id", "=", event.eventId)
            .executeTakeFirst();
          if (earlier === undefined) throw new RaceLostError();
          if (earlier.fingerprint !== fingerprint) {
            throw new DirectoryError(
              "conflict",
              `event id ${event.eventId} was already reported with other content`,
            );
          }
          return row;
        }
        const { counters, banStarted } = applyNodeEvent(
          {
            reputation: row.reputation,
            strikes: row.strikes,
            bans: row.bans,
            bannedUntilMs: msOf(row.banned_until_ms),
            jobsCompleted: Number(row.jobs_completed),
            computeMs: Number(row.compute_ms),
          },
          { kind: event.kind, computeTimeMs },
          now,
          banPolicy,
        );
        const update = {
          reputation: counters.reputation,
          strikes: counters.strikes,
          bans: counters.bans,
          banned_until_ms: counters.bannedUntilMs,
          jobs_completed: counters.jobsCompleted,
          compute_ms: counters.computeMs,
          // A ban ends the node's online session: it may not heartbeat until the ban is over.
          ...(banStarted ? closedSession(row, now, heartbeatTimeoutMs) : {}),
        };
        await trx.updateTable("registry_node").set(update).where("address", "=", address).execute();
        return { ...row, ...update };
      });
      return standingOf(row, now, heartbeatTimeoutMs);
    },

    registerValidator: validators.register,
    unregisterValidator: validators.unregister,
    slashValidator: validators.slash,
    releaseDueStakes: validators.releaseDueStakes,
    getValidator: validators.get,
    listValidators: validators.list,
    listValidatorPage: validators.listPage,
    reportValidatorEvent: validators.reportEvent,
  };
}

/**
 * The columns that close a node's online session at `now`: the session counts as online until
 * its last heartbeat plus the timeout (when the node stopped being reported online), or until
 * now if that is earlier.
 */
function closedSession(row: NodeRow, now: number, timeoutMs: number) {
  const last = msOf(row.last_heartbeat_at_ms);
  const since = msOf(row.online_since_ms);
  const session =
    row.online === 1 && since !== null && last !== null
      ? Math.min(now, last + timeoutMs) - since
      : 0;
  return {
    online: 0,
    online_since_ms: null,
    online_total_ms: Number(row.online_total_ms) + Math.max(0, session),
  };
}

function bannedError(row: NodeRow): DirectoryError {
  const until = new Date(Number(row.banned_until_ms));
  return new DirectoryError(
    "banned",
    `node ${row.address} is banned until ${until.toISOString()}`,
    { bannedUntil: until },
  );
}

function checkEvent(address: string, event: NodeEventReport): void {
  if (!isAddress(address)) {
    throw new DirectoryError("invalid", "node_address is not a valid address");
  }
  if (event.eventId.length === 0 || event.eventId.length > MAX_EVENT_ID) {
    throw new DirectoryError("invalid", `event_id must be 1-${MAX_EVENT_ID} characters`);
  }
  if (event.kind === NodeEventKind.UNSPECIFIED || NodeEventKind[event.kind] === undefined) {
    throw new DirectoryError("invalid", "kind must be a known NodeEventKind");
  }
  if ((event.requestId ?? "").length > MAX_REQUEST_ID) {
    throw new DirectoryError("invalid", `request_id is longer than ${MAX_REQUEST_ID} characters`);
  }
  if ((event.detail ?? "").length > MAX_DETAIL) {
    throw new DirectoryError("invalid", `detail is longer than ${MAX_DETAIL} characters`);
  }
  const computeTimeMs = Number(event.computeTimeMs ?? 0);
  if (!Number.isSafeInteger(computeTimeMs) || computeTimeMs < 0) {
    throw new DirectoryError("invalid", "compute_time_ms is out of range");
  }
}
