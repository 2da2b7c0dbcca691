/**
 * The tables the registry's directory and validator set own, as Kysely sees them. Add them to
 * the registry database's interface; {@link registryMigrations} creates them.
 *
 * Conventions: times are Unix milliseconds in `bigint` columns (PostgreSQL hands them back as
 * strings, SQLite as numbers: read them through `Number`); amounts and sequences are
 * fixed-width decimal text (`Money` of @tessera/store), so they compare correctly in SQL on both
 * stores; protobuf messages are stored as base64 of their binary encoding, the exact bytes that
 * were signed.
 */
import type { Money } from "@tessera/store";
import type { ColumnType } from "kysely";

/** A 64-bit integer column: written as a number, read as a number (SQLite) or string (pg). */
export type Int64Column = ColumnType<number | string, number, number>;
/** A nullable 64-bit integer column. */
export type NullableInt64Column = ColumnType<
  number | string | null,
  number | null | undefined,
  number | null
>;

/** One node of the directory, live or a tombstone (`deregistered_at_ms` set). */
export interface RegistryNodeTable {
  address: string;
  /** Base64 of the NodeRecord's binary encoding, signature included. */
  record: string;
  sequence: Money;
  node_type: number;
  /** Decimal text of the record's uint64 `subnet_id`. */
  subnet_id: string;
  registered_at_ms: Int64Column;
  updated_at_ms: Int64Column;
  deregistered_at_ms: NullableInt64Column;
  deregister_reason: string | null;
  reputation: number;
  jobs_completed: Int64Column;
  compute_ms: Int64Column;
  strikes: number;
  bans: number;
  banned_until_ms: NullableInt64Column;
  stake_amount: Money;
  /** 1 while an online session is open (heartbeats arriving), else 0. */
  online: number;
  online_since_ms: NullableInt64Column;
  /** Online time of closed sessions. */
  online_total_ms: Int64Column;
  last_heartbeat_at_ms: NullableInt64Column;
  /** Base64 of the last heartbeat's NodeLoad. */
  load: string | null;
}

/** One applied ReportNodeEvent, keyed by its reporter and the reporter's event id. */
export interface RegistryNodeEventTable {
  reporter: string;
  event_id: string;
  node_address: string;
  kind: number;
  /** SHA3-256 hex of what the event says, to tell a retry from a different event. */
  fingerprint: string;
  recorded_at_ms: Int64Column;
}

/** One validator of the validator set. */
export interface RegistryValidatorTable {
  address: string;
  /** Hex of the ed25519 public key. */
  public_key: string;
  /** Base64 of the Endpoint's binary encoding. */
  endpoint: string;
  stake_amount: Money;
  stake_id: string;
  reputation: number;
  /** ValidatorStatus number. */
  status: number;
  registered_at_ms: Int64Column;
  updated_at_ms: Int64Column;
  reason: string | null;
}

/**
 * A validator's wallet stake the registry (its arbiter) owes back: written when the validator
 * leaves the active set, unlocked in the wallet once `due_at_ms` has passed (its open approvals
 * have settled), then marked released.
 */
export interface RegistryStakeReleaseTable {
  stake_id: string;
  validator_address: string;
  /** Why, passed on to UnlockStake. */
  reason: string;
  /** Not before this time: when the last approval the validator signed stops being open. */
  due_at_ms: Int64Column;
  created_at_ms: Int64Column;
  /** When the wallet confirmed the unlock; null while owed. */
  released_at_ms: NullableInt64Column;
}

/** The registry's directory and validator tables. */
export interface RegistryTables {
  registry_node: RegistryNodeTable;
  registry_node_event: RegistryNodeEventTable;
  registry_validator: RegistryValidatorTable;
  registry_stake_release: RegistryStakeReleaseTable;
}
