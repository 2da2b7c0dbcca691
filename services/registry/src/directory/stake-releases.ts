/**
 * Stakes the registry owes back: when a validator leaves the active set (unregistered, or slashed
 * below the minimum) the registry, its stake's arbiter, unlocks the stake in the wallet once no
 * approval the validator signed is still open. The debt is written in the same transaction that
 * removes the validator, so a crash or an unreachable wallet only delays the unlock:
 * {@link StakeReleases.releaseDue} (run by the stake-release sweeper) pays whatever is due.
 */
import { type Store, toMoney } from "@tessera/store";
import type { Transaction } from "kysely";
import type { ValidatorStakeOptions } from "./stakes.js";
import type { RegistryTables } from "./tables.js";

/** What {@link createStakeReleases} needs. */
export interface StakeReleasesContext {
  readonly store: Store<RegistryTables>;
  readonly nowMs: () => number;
  readonly stakes: ValidatorStakeOptions;
}

/** A stake to owe back. */
export interface OwedStake {
  readonly stakeId: string;
  readonly validatorAddress: string;
  /** Passed on to UnlockStake; at most 256 characters. */
  readonly reason: string;
  /** Not before this time (Unix ms). */
  readonly dueAtMs: number;
}

/** The registry's owed stakes. */
export interface StakeReleases {
  /**
   * When a stake of `validator` may be unlocked: now, or when the last approval it signed stops
   * being open.
   */
  dueAt(validator: string): Promise<number>;
  /** Records the debt inside `trx` (the transaction that removes the validator). Idempotent. */
  owe(trx: Transaction<RegistryTables>, owed: OwedStake): Promise<void>;
  /** Whether `stakeId` is owed back or was returned: it can no longer back a registration. */
  isReleasing(stakeId: string): Promise<boolean>;
  /**
   * Unlocks `stakeId` in the wallet if it is owed and due (postponing it when approvals of its
   * validator are open again); true once it is returned. The validator's recorded stake drops to
   * 0. Wallet failures propagate (DirectoryError "unavailable"); the debt stays for a retry.
   */
  release(stakeId: string): Promise<boolean>;
  /** Releases every owed stake that is due; returns the stake ids returned. */
  releaseDue(): Promise<string[]>;
}

/** How many owed stakes one {@link StakeReleases.releaseDue} pays at most. */
const RELEASE_BATCH = 100;

/** Opens the owed-stake book over `ctx.store`. Holds no resources of its own. */
export function createStakeReleases(ctx: StakeReleasesContext): StakeReleases {
  const { store, stakes } = ctx;

  async function dueAt(validator: string): Promise<number> {
    const now = ctx.nowMs();
    const openUntil = await stakes.openApprovalsUntil?.(validator, new Date(now));
    return Math.max(now, openUntil?.getTime() ?? now);
  }

  async function markReleased(stakeId: string, validator: string): Promise<void> {
    const now = ctx.nowMs();
    await store.transaction(async (trx) => {
      await trx
        .updateTable("registry_stake_release")
        .set({ released_at_ms: now })
        .where("stake_id", "=", stakeId)
        .where("released_at_ms", "is", null)
        .execute();
      // The stake no longer backs the (inactive) validator: ValidatorInfo reports it as 0.
      await trx
        .updateTable("registry_validator")
        .set({ stake_amount: toMoney(0n), updated_at_ms: now })
        .where("address", "=", validator)
        .where("stake_id", "=", stakeId)
        .execute();
    });
  }

  async function release(stakeId: string): Promise<boolean> {
    const row = await store.db
      .selectFrom("registry_stake_release")
      .selectAll()
      .where("stake_id", "=", stakeId)
      .executeTakeFirst();
    if (row === undefined) return false;
    if (row.released_at_ms !== null) return true;
    if (Number(row.due_at_ms) > ctx.nowMs()) return false;
    const due = await dueAt(row.validator_address);
    if (due > ctx.nowMs()) {
      await store.db
        .updateTable("registry_stake_release")
        .set({ due_at_ms: due })
        .where("stake_id", "=", stakeId)
        .execute();
      return false;
    }
    const stake = await stakes.ledger.getStake(stakeId);
    // Unknown to the wallet, already unlocked, or slashed to nothing: nothing is left to return.
    if (stake?.state === "locked") await stakes.ledger.unlockStake(stakeId, row.reason);
    await markReleased(stakeId, row.validator_address);
    return true;
  }

  return {
    dueAt,

    async owe(trx, owed) {
      await trx
        .insertInto("registry_stake_release")
        .values({
          stake_id: owed.stakeId,
          validator_address: owed.validatorAddress,
          reason: owed.reason,
          due_at_ms: owed.dueAtMs,
          created_at_ms: ctx.nowMs(),
          released_at_ms: null,
        })
        .onConflict((conflict) => conflict.column("stake_id").doNothing())
        .execute();
    },

    async isReleasing(stakeId) {
      const row = await store.db
        .selectFrom("registry_stake_release")
        .select("stake_id")
        .where("stake_id", "=", stakeId)
        .executeTakeFirst();
      return row !== undefined;
    },

    release,

    async releaseDue() {
      const rows = await store.db
        .selectFrom("registry_stake_release")
        .select("stake_id")
        .where("released_at_ms", "is", null)
        .where("due_at_ms", "<=", ctx.nowMs())
        .orderBy("due_at_ms")
        .limit(RELEASE_BATCH)
        .execute();
      const released: string[] = [];
      let firstError: unknown;
      for (const { stake_id: stakeId } of rows) {
        try {
          if (await release(stakeId)) released.push(stakeId);
        } catch (error) {
          firstError ??= error;
        }
      }
      if (firstError !== undefined) throw firstError;
      return released;
    },
  };
}
