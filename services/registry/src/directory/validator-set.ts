/**
 * The validator set: validators registered with a signed record and a stake, their status and
 * reputation. Part of the {@link Directory} (the methods are merged into it); kept apart because
 * it is its own table and life cycle.
 *
 * Stakes: the contract has the registry check the stake (its staker, arbiter and amount) with the
 * wallet, and unlock it once a validator's open approvals settle. Both come with the wallet issue;
 * until then the registry records the stake id and amount it was told and checks only the minimum.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { fromHex, toHex } from "@tessera/identity/hash";
import {
  EndpointSchema,
  type NodeRecord,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type ValidatorInfo,
  ValidatorInfoSchema,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { fromMoney, MONEY_MAX, type Store, toMoney } from "@tessera/store";
import type { Selectable, Transaction } from "kysely";
import { fromBase64, toBase64 } from "./base64.js";
import { DirectoryError, RaceLostError } from "./errors.js";
import type { NodeRow } from "./node-entry.js";
import { decodePageToken, encodePageToken, pageSizeOf } from "./page-token.js";
import { REGISTRY_PROTOCOL_VERSION } from "./protocol-version.js";
import { applyValidatorEvent, INITIAL_REPUTATION, type ValidatorEvent } from "./reputation.js";
import type { RegistryTables, RegistryValidatorTable } from "./tables.js";

/** A page request of ListValidators. */
export interface ValidatorPageRequest {
  /** Only validators in this status; UNSPECIFIED or undefined for any. */
  readonly status?: ValidatorStatus | undefined;
  /** 1-500; 0 or undefined means 100; larger values are lowered to 500. */
  readonly pageSize?: number | undefined;
  /** The previous page's `nextPageToken`; empty or undefined for the first page. */
  readonly pageToken?: string | undefined;
}

/** One page of validators, ordered by address. */
export interface ValidatorPage {
  readonly validators: ValidatorInfo[];
  /** Empty on the last page. */
  readonly nextPageToken: string;
}

/** What the validator set borrows from the directory. */
export interface ValidatorSetContext {
  readonly store: Store<RegistryTables>;
  readonly nowMs: () => number;
  readonly minStake: bigint;
  /** Throws DirectoryError when the record is not valid (version, type, key, PoW, signature). */
  readonly checkRecord: (record: NodeRecord) => void;
  /** Stores the record in the directory if newer, inside `trx`. */
  readonly applyRecord: (
    trx: Transaction<RegistryTables>,
    record: NodeRecord,
    nowMs: number,
  ) => Promise<{ outcome: "accepted" | "unchanged" | "stale" | "conflict"; row: NodeRow }>;
  readonly inTransaction: <T>(fn: (trx: Transaction<RegistryTables>) => Promise<T>) => Promise<T>;
}

const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 500;
const MAX_STAKE_ID = 128;
const MAX_REASON = 256;

type ValidatorRow = Selectable<RegistryValidatorTable>;

/** The validator set's operations, over the directory's store. */
export function createValidatorSet(ctx: ValidatorSetContext) {
  const { store } = ctx;

  function lock(trx: Transaction<RegistryTables>, address: string) {
    return store
      .forUpdate(trx.selectFrom("registry_validator").selectAll().where("address", "=", address))
      .executeTakeFirst();
  }

  async function register(
    record: NodeRecord,
    stakeAmount: bigint | string,
    stakeId: string,
    caller?: string,
  ): Promise<ValidatorInfo> {
    if (caller !== undefined && caller !== record.address) {
      throw new DirectoryError(
        "permission_denied",
        `the caller ${caller} is not the record's address ${record.address}`,
      );
    }
    if (record.nodeType !== NodeType.VALIDATOR) {
      throw new DirectoryError("invalid", "a validator's record must have node_type VALIDATOR");
    }
    const endpoint = record.endpoint;
    if (
      endpoint === undefined ||
      (endpoint.url === "" && (endpoint.host === "" || !endpoint.port))
    ) {
      throw new DirectoryError(
        "invalid",
        "a validator's record must name the endpoint where it serves ValidatorService",
      );
    }
    const stake = parseStake(stakeAmount);
    if (stake < ctx.minStake) {
      throw new DirectoryError(
        "invalid",
        `stake_amount ${stake} is below the registry's minimum ${ctx.minStake}`,
      );
    }
    if (stakeId.length === 0 || stakeId.length > MAX_STAKE_ID) {
      throw new DirectoryError("invalid", `stake_id must be 1-${MAX_STAKE_ID} characters`);
    }
    ctx.checkRecord(record);
    const now = ctx.nowMs();
    const row = await ctx.inTransaction(async (trx) => {
      const { outcome, row: node } = await ctx.applyRecord(trx, record, now);
      if (outcome === "stale") {
        throw new DirectoryError(
          "stale",
          `record sequence ${record.sequence} is not newer than the registered ${BigInt(node.sequence)}`,
        );
      }
      if (outcome === "conflict") {
        throw new DirectoryError(
          "conflict",
          `a different record with sequence ${record.sequence} is already registered`,
        );
      }
      const fields = {
        public_key: toHex(record.publicKey),
        endpoint: toBase64(toBinary(EndpointSchema, endpoint)),
        updated_at_ms: now,
      };
      const existing = await lock(trx, record.address);
      if (existing === undefined) {
        const fresh = {
          address: record.address,
          ...fields,
          stake_amount: toMoney(stake),
          stake_id: stakeId,
          reputation: INITIAL_REPUTATION,
          status: ValidatorStatus.ACTIVE,
          registered_at_ms: now,
          reason: null,
        };
        const inserted = await trx
          .insertInto("registry_validator")
          .values(fresh)
          .onConflict((conflict) => conflict.column("address").doNothing())
          .executeTakeFirst();
        if (inserted.numInsertedOrUpdatedRows !== 1n) throw new RaceLostError();
        return fresh;
      }
      if (existing.status === ValidatorStatus.SLASHED) {
        throw new DirectoryError(
          "permission_denied",
          `validator ${record.address} was slashed and may not register again`,
        );
      }
      const sameStake = existing.stake_id === stakeId && fromMoney(existing.stake_amount) === stake;
      if (existing.status === ValidatorStatus.ACTIVE && !sameStake) {
        throw new DirectoryError(
          "conflict",
          `validator ${record.address} is registered with another stake; unregister it first`,
        );
      }
      const update = {
        ...fields,
        stake_amount: toMoney(stake),
        stake_id: stakeId,
        status: ValidatorStatus.ACTIVE,
        reason: null,
      };
      await trx
        .updateTable("registry_validator")
        .set(update)
        .where("address", "=", record.address)
        .execute();
      return { ...existing, ...update };
    });
    return infoOf(row);
  }

  async function unregister(address: string, caller: string, reason = ""): Promise<ValidatorInfo> {
    if (caller !== address) {
      throw new DirectoryError(
        "permission_denied",
        `only the validator itself may unregister ${address}`,
      );
    }
    if (reason.length > MAX_REASON) {
      throw new DirectoryError("invalid", `reason is longer than ${MAX_REASON} characters`);
    }
    const now = ctx.nowMs();
    const row = await store.transaction(async (trx) => {
      const row = await lock(trx, address);
      if (row === undefined) {
        throw new DirectoryError("not_found", `validator ${address} is not registered`);
      }
      if (row.status !== ValidatorStatus.ACTIVE) return row;
      // Unlocking the stake in the wallet once the validator's open approvals settle comes with
      // the wallet issue; the stake stays recorded here until then.
      const update = { status: ValidatorStatus.INACTIVE, reason, updated_at_ms: now };
      await trx
        .updateTable("registry_validator")
        .set(update)
        .where("address", "=", address)
        .execute();
      return { ...row, ...update };
    });
    return infoOf(row);
  }

  async function get(address: string): Promise<ValidatorInfo | undefined> {
    const row = await store.db
      .selectFrom("registry_validator")
      .selectAll()
      .where("address", "=", address)
      .executeTakeFirst();
    return row === undefined ? undefined : infoOf(row);
  }

  async function list(
    filter: { readonly status?: ValidatorStatus | undefined } = {},
  ): Promise<ValidatorInfo[]> {
    let query = store.db.selectFrom("registry_validator").selectAll().orderBy("address");
    if (filter.status) query = query.where("status", "=", filter.status);
    return (await query.execute()).map(infoOf);
  }

  async function listPage(request: ValidatorPageRequest): Promise<ValidatorPage> {
    const status = request.status ?? ValidatorStatus.UNSPECIFIED;
    const filters = { status };
    const after = decodePageToken(request.pageToken ?? "", filters);
    const pageSize = pageSizeOf(request.pageSize ?? 0, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    let query = store.db
      .selectFrom("registry_validator")
      .selectAll()
      .orderBy("address")
      .limit(pageSize + 1);
    if (status) query = query.where("status", "=", status);
    if (after !== undefined) query = query.where("address", ">", after);
    const rows = await query.execute();
    const page = rows.slice(0, pageSize);
    const last = page.at(-1);
    return {
      validators: page.map(infoOf),
      nextPageToken:
        rows.length > pageSize && last !== undefined ? encodePageToken(filters, last.address) : "",
    };
  }

  async function reportEvent(address: string, event: ValidatorEvent): Promise<ValidatorInfo> {
    const now = ctx.nowMs();
    const row = await store.transaction(async (trx) => {
      const row = await lock(trx, address);
      if (row === undefined) {
        throw new DirectoryError("not_found", `validator ${address} is not registered`);
      }
      const update = {
        reputation: applyValidatorEvent(row.reputation, event),
        updated_at_ms: now,
      };
      await trx
        .updateTable("registry_validator")
        .set(update)
        .where("address", "=", address)
        .execute();
      return { ...row, ...update };
    });
    return infoOf(row);
  }

  async function isActive(address: string): Promise<boolean> {
    const row = await store.db
      .selectFrom("registry_validator")
      .select("status")
      .where("address", "=", address)
      .executeTakeFirst();
    return row?.status === ValidatorStatus.ACTIVE;
  }

  return { register, unregister, get, list, listPage, reportEvent, isActive };
}

function parseStake(amount: bigint | string): bigint {
  if (typeof amount === "bigint") {
    if (amount < 0n || amount > MONEY_MAX) {
      throw new DirectoryError("invalid", "stake_amount is out of range");
    }
    return amount;
  }
  if (!/^[0-9]{1,78}$/.test(amount)) {
    throw new DirectoryError(
      "invalid",
      "stake_amount must be a decimal string of integer base units",
    );
  }
  return BigInt(amount);
}

function infoOf(row: ValidatorRow): ValidatorInfo {
  return create(ValidatorInfoSchema, {
    protocolVersion: { ...REGISTRY_PROTOCOL_VERSION },
    address: row.address,
    publicKey: fromHex(row.public_key),
    endpoint: fromBinary(EndpointSchema, fromBase64(row.endpoint)),
    stakeAmount: fromMoney(row.stake_amount).toString(),
    stakeId: row.stake_id,
    reputation: row.reputation,
    registeredAt: timestampFromMs(Number(row.registered_at_ms)),
    status: row.status,
  });
}
