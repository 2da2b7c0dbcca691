/**
 * The validator set: validators registered with a signed record and a stake, their status and
 * reputation. Part of the {@link Directory} (the methods are merged into it); kept apart because
 * it is its own table and life cycle.
 *
 * Stakes: a validator backs its registration with a wallet stake it locked naming this registry
 * as arbiter. Registration checks the stake with the wallet (staker, arbiter, state, amount);
 * leaving the active set (unregistered, or slashed below the minimum) owes the stake back, and
 * the wallet unlocks it once the validator's open approvals settle (./stake-releases.ts). A
 * registry without a wallet (no {@link ValidatorStakeOptions}) registers validators with no stake
 * only.
 */
import { randomUUID } from "node:crypto";
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
import { createStakeReleases, type StakeReleases } from "./stake-releases.js";
import type { ValidatorStakeOptions } from "./stakes.js";
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
  /** The wallet's stakes; undefined when the registry has no wallet (then only stake 0 registers). */
  readonly stakes?: ValidatorStakeOptions | undefined;
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

/** A slash of a validator's stake (see {@link createValidatorSet}'s `slash`). */
export interface ValidatorSlash {
  /** Id of the slash in the wallet, 1-128 characters of [A-Za-z0-9._:-]; retries are safe. */
  readonly slashId: string;
  /** Base units to take; more than the stake holds takes all of it. */
  readonly amount: bigint;
  /** Why, for the record; at most 256 characters. */
  readonly reason: string;
}

/** The validator set's operations, over the directory's store. */
export function createValidatorSet(ctx: ValidatorSetContext) {
  const { store, stakes } = ctx;
  const releases: StakeReleases | undefined =
    stakes === undefined ? undefined : createStakeReleases({ store, nowMs: ctx.nowMs, stakes });
  if (ctx.minStake > 0n && stakes === undefined) {
    throw new RangeError("a minimum validator stake needs the wallet's stakes to check it");
  }

  /**
   * Checks with the wallet that `stakeId` is `address`'s locked stake, naming this registry as
   * arbiter and holding at least `amount`.
   */
  async function checkStake(address: string, stakeId: string, amount: bigint): Promise<void> {
    if (stakes === undefined || releases === undefined) {
      throw new DirectoryError(
        "failed_precondition",
        "this registry has no wallet to check stakes with; register with stake_amount 0",
      );
    }
    if (await releases.isReleasing(stakeId)) {
      throw new DirectoryError(
        "failed_precondition",
        `stake ${stakeId} backed an earlier registration and is being returned; lock a new stake`,
      );
    }
    const stake = await stakes.ledger.getStake(stakeId);
    if (stake === undefined) {
      throw new DirectoryError(
        "failed_precondition",
        `stake ${stakeId} does not exist in the wallet; lock it first (LockStake with arbiter ${stakes.arbiterAddress})`,
      );
    }
    if (stake.stakerAddress !== address) {
      throw new DirectoryError(
        "permission_denied",
        `stake ${stakeId} is not the validator's: its staker is ${stake.stakerAddress}`,
      );
    }
    if (stake.arbiterAddress !== stakes.arbiterAddress) {
      throw new DirectoryError(
        "failed_precondition",
        `stake ${stakeId} names arbiter ${stake.arbiterAddress}, not this registry ${stakes.arbiterAddress}`,
      );
    }
    if (stake.state !== "locked") {
      throw new DirectoryError("failed_precondition", `stake ${stakeId} is ${stake.state}`);
    }
    if (stake.amount < amount) {
      throw new DirectoryError(
        "failed_precondition",
        `stake ${stakeId} holds ${stake.amount}, less than stake_amount ${amount}`,
      );
    }
  }

  /** Unlocks the validator's owed stake now if it is due; wallet failures propagate. */
  async function releaseIfDue(row: ValidatorRow): Promise<ValidatorRow> {
    if (releases === undefined || row.stake_id === "") return row;
    if (!(await releases.release(row.stake_id))) return row;
    return (await read(row.address)) ?? row;
  }

  function read(address: string) {
    return store.db
      .selectFrom("registry_validator")
      .selectAll()
      .where("address", "=", address)
      .executeTakeFirst();
  }

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
    if (stake > 0n && (stakeId.length === 0 || stakeId.length > MAX_STAKE_ID)) {
      throw new DirectoryError("invalid", `stake_id must be 1-${MAX_STAKE_ID} characters`);
    }
    if (stake === 0n && stakeId !== "") {
      throw new DirectoryError(
        "invalid",
        "stake_id must be empty when stake_amount is 0 (no stake backs the validator)",
      );
    }
    ctx.checkRecord(record);
    // Checked here too, so a refusal that needs no wallet does not wait for one.
    checkReRegistration(await read(record.address), record.address, stakeId, stake);
    if (stake > 0n) await checkStake(record.address, stakeId, stake);
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
      checkReRegistration(existing, record.address, stakeId, stake);
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
    const dueAtMs = await releases?.dueAt(address);
    const now = ctx.nowMs();
    const row = await store.transaction(async (trx) => {
      const row = await lock(trx, address);
      if (row === undefined) {
        throw new DirectoryError("not_found", `validator ${address} is not registered`);
      }
      if (row.status !== ValidatorStatus.ACTIVE) return row;
      const update = { status: ValidatorStatus.INACTIVE, reason, updated_at_ms: now };
      await trx
        .updateTable("registry_validator")
        .set(update)
        .where("address", "=", address)
        .execute();
      if (releases !== undefined && dueAtMs !== undefined && row.stake_id !== "") {
        await releases.owe(trx, {
          stakeId: row.stake_id,
          validatorAddress: address,
          reason: reason || "validator unregistered",
          dueAtMs,
        });
      }
      return { ...row, ...update };
    });
    // Called again after a failed unlock, it retries the unlock.
    return infoOf(await releaseIfDue(row));
  }

  /**
   * Takes `slash.amount` from an active validator's stake for the treasury. A validator whose
   * stake falls below the minimum (or to nothing) becomes SLASHED: it leaves the active set for
   * good, and what remains of its stake is owed back like an unregistered validator's. An
   * inactive or unstaked validator is returned unchanged.
   * @throws "not_found", "failed_precondition" without a wallet, and the wallet's errors.
   */
  async function slash(address: string, penalty: ValidatorSlash): Promise<ValidatorInfo> {
    const current = await read(address);
    if (current === undefined) {
      throw new DirectoryError("not_found", `validator ${address} is not registered`);
    }
    if (current.status !== ValidatorStatus.ACTIVE || current.stake_id === "") {
      return infoOf(current);
    }
    if (stakes === undefined || releases === undefined) {
      throw new DirectoryError("failed_precondition", "this registry has no wallet to slash with");
    }
    const stakeId = current.stake_id;
    const after = await stakes.ledger.slashStake({
      slashId: penalty.slashId,
      stakeId,
      amount: penalty.amount,
      beneficiaryAddress: stakes.slashBeneficiary,
      reason: penalty.reason,
    });
    const dueAtMs = await releases.dueAt(address);
    const now = ctx.nowMs();
    const row = await store.transaction(async (trx) => {
      const row = await lock(trx, address);
      // Re-registered with another stake meanwhile: that one was not slashed.
      if (row === undefined || row.stake_id !== stakeId) return row;
      const out = after.state !== "locked" || after.amount < ctx.minStake;
      const update = {
        stake_amount: toMoney(after.amount),
        updated_at_ms: now,
        ...(out && row.status === ValidatorStatus.ACTIVE
          ? { status: ValidatorStatus.SLASHED, reason: `slashed: ${penalty.reason}` }
          : {}),
      };
      await trx
        .updateTable("registry_validator")
        .set(update)
        .where("address", "=", address)
        .execute();
      if (out) {
        await releases.owe(trx, {
          stakeId,
          validatorAddress: address,
          reason: "validator slashed below the minimum stake",
          dueAtMs,
        });
      }
      return { ...row, ...update };
    });
    if (row === undefined) {
      throw new DirectoryError("not_found", `validator ${address} is not registered`);
    }
    return infoOf(await releaseIfDue(row));
  }

  async function get(address: string): Promise<ValidatorInfo | undefined> {
    const row = await read(address);
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
    const penalty = stakes?.slashPerInvalidSignature ?? 0n;
    if (event === "invalid_signature" && penalty > 0n) {
      // A signature that does not verify is the misbehaviour the registry itself can prove.
      return slash(address, {
        slashId: `registry-slash:${randomUUID()}`,
        amount: penalty,
        reason: "answered a proposal with a signature that does not verify",
      });
    }
    return infoOf(row);
  }

  /** Unlocks every owed stake that is due (the stake-release sweeper's work). */
  async function releaseDueStakes(): Promise<string[]> {
    return releases === undefined ? [] : releases.releaseDue();
  }

  async function isActive(address: string): Promise<boolean> {
    const row = await store.db
      .selectFrom("registry_validator")
      .select("status")
      .where("address", "=", address)
      .executeTakeFirst();
    return row?.status === ValidatorStatus.ACTIVE;
  }

  return {
    register,
    unregister,
    slash,
    get,
    list,
    listPage,
    reportEvent,
    isActive,
    releaseDueStakes,
  };
}

/** Refuses registering again a slashed validator, or an active one with another stake. */
function checkReRegistration(
  existing: ValidatorRow | undefined,
  address: string,
  stakeId: string,
  stake: bigint,
): void {
  if (existing === undefined) return;
  if (existing.status === ValidatorStatus.SLASHED) {
    throw new DirectoryError(
      "permission_denied",
      `validator ${address} was slashed and may not register again`,
    );
  }
  const sameStake = existing.stake_id === stakeId && fromMoney(existing.stake_amount) === stake;
  if (existing.status === ValidatorStatus.ACTIVE && !sameStake) {
    throw new DirectoryError(
      "conflict",
      `validator ${address} is registered with another stake; unregister it first`,
    );
  }
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
