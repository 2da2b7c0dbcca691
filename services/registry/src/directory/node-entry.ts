/**
 * Directory rows as the contract's messages: NodeEntry and NodeStanding, with liveness and
 * ban state computed at read time (so a missed sweep never shows a dead node online).
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  NodeLoadSchema,
  type NodeRecord,
  NodeRecordSchema,
  type NodeStanding,
  NodeStandingSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type NodeEntry,
  NodeEntrySchema,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { fromMoney } from "@tessera/store";
import type { Selectable } from "kysely";
import { fromBase64 } from "./base64.js";
import { REGISTRY_PROTOCOL_VERSION } from "./protocol-version.js";
import type { RegistryNodeTable } from "./tables.js";

/** A directory row as read. */
export type NodeRow = Selectable<RegistryNodeTable>;

/** A nullable int64 column value as a number. */
export function msOf(value: number | string | null): number | null {
  return value === null ? null : Number(value);
}

/** The node record stored in `row`. */
export function recordOf(row: NodeRow): NodeRecord {
  return fromBinary(NodeRecordSchema, fromBase64(row.record));
}

/** Whether the node is banned at `nowMs`. */
export function isBanned(row: NodeRow, nowMs: number): boolean {
  const until = msOf(row.banned_until_ms);
  return until !== null && until > nowMs;
}

/** Whether the node's heartbeats arrive within `timeoutMs` at `nowMs`, and it is not banned. */
export function isOnline(row: NodeRow, nowMs: number, timeoutMs: number): boolean {
  const last = msOf(row.last_heartbeat_at_ms);
  return (
    row.online === 1 &&
    row.deregistered_at_ms === null &&
    last !== null &&
    nowMs - last <= timeoutMs &&
    !isBanned(row, nowMs)
  );
}

/** The node's standing at `nowMs`. */
export function standingOf(row: NodeRow, nowMs: number, timeoutMs: number): NodeStanding {
  const online = isOnline(row, nowMs, timeoutMs);
  const last = msOf(row.last_heartbeat_at_ms);
  const since = msOf(row.online_since_ms);
  // An open session counts until now, or until its last heartbeat plus the timeout once lapsed.
  const openSessionMs =
    row.online === 1 && since !== null && last !== null
      ? Math.min(nowMs, last + timeoutMs) - since
      : 0;
  const lifeMs = nowMs - Number(row.registered_at_ms);
  const onlineMs = Number(row.online_total_ms) + Math.max(0, openSessionMs);
  const bannedUntil = msOf(row.banned_until_ms);
  return create(NodeStandingSchema, {
    reputation: row.reputation,
    jobsCompleted: BigInt(row.jobs_completed),
    computeSeconds: BigInt(Math.floor(Number(row.compute_ms) / 1000)),
    averageRating: 0,
    online,
    ...(last === null ? {} : { lastHeartbeatAt: timestampFromMs(last) }),
    uptimeRatio: lifeMs > 0 ? Math.min(1, onlineMs / lifeMs) : online ? 1 : 0,
    strikes: row.strikes,
    ...(bannedUntil !== null && bannedUntil > nowMs
      ? { bannedUntil: timestampFromMs(bannedUntil) }
      : {}),
    stakeAmount: fromMoney(row.stake_amount).toString(),
  });
}

/** The node's directory entry at `nowMs`. */
export function entryOf(row: NodeRow, nowMs: number, timeoutMs: number): NodeEntry {
  return create(NodeEntrySchema, {
    protocolVersion: { ...REGISTRY_PROTOCOL_VERSION },
    record: recordOf(row),
    standing: standingOf(row, nowMs, timeoutMs),
    ...(row.load === null ? {} : { load: fromBinary(NodeLoadSchema, fromBase64(row.load)) }),
    registeredAt: timestampFromMs(Number(row.registered_at_ms)),
    updatedAt: timestampFromMs(Number(row.updated_at_ms)),
  });
}
