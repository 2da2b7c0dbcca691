/**
 * What the validator set needs from the wallet's stakes (WalletService LockStake / GetStake /
 * UnlockStake / SlashStake), seen from the registry, which is every validator stake's arbiter.
 * The domain states it; `wallet-client.ts` implements it over Connect, tests with a fake.
 */

/** Where a wallet stake is in its life (the wallet's StakeState). */
export type WalletStakeState = "locked" | "unlocked" | "slashed";

/** A wallet stake as the registry reads it. */
export interface WalletStake {
  readonly stakeId: string;
  /** Whose money is locked. */
  readonly stakerAddress: string;
  /** Who may unlock or slash it; a validator's stake must name this registry. */
  readonly arbiterAddress: string;
  /** Base units still locked (0 once unlocked or slashed to zero). */
  readonly amount: bigint;
  readonly state: WalletStakeState;
}

/** A penalty taken from a stake (SlashStake). */
export interface StakeSlash {
  /** Arbiter-chosen id of this slash, 1-128 characters of [A-Za-z0-9._:-]; retries are safe. */
  readonly slashId: string;
  readonly stakeId: string;
  /** Base units to take; more than remains is lowered to what remains. */
  readonly amount: bigint;
  /** Who receives the slashed money (the treasury). */
  readonly beneficiaryAddress: string;
  /** Why, for the record; at most 256 characters. */
  readonly reason: string;
}

/**
 * The wallet's stakes, called with the registry's key. Failures are DirectoryErrors:
 * "unavailable" when the wallet cannot be reached (or refuses the registry), "failed_precondition"
 * when the stake is in the wrong state, "not_found" for an unknown stake in unlock and slash.
 */
export interface StakeLedger {
  /** The stake, or undefined when the wallet has none with that id. */
  getStake(stakeId: string): Promise<WalletStake | undefined>;
  /** Returns what remains of the stake to its staker; unlocking an unlocked stake returns it. */
  unlockStake(stakeId: string, reason: string): Promise<WalletStake>;
  /** Takes a penalty from a locked stake; the stake after it. */
  slashStake(slash: StakeSlash): Promise<WalletStake>;
}

/** How the validator set backs validators with wallet stakes. */
export interface ValidatorStakeOptions {
  /** The wallet's stakes. */
  readonly ledger: StakeLedger;
  /** This registry's address: the arbiter every validator's stake must name. */
  readonly arbiterAddress: string;
  /** Who receives slashed money (the treasury). */
  readonly slashBeneficiary: string;
  /**
   * Base units taken from a validator's stake each time it answers a proposal with a signature
   * that does not verify; 0 (the default) never slashes.
   */
  readonly slashPerInvalidSignature?: bigint | undefined;
  /**
   * The latest expiry of the approvals `validator` signed that are still open (not expired, not
   * settled), or undefined when none is: its stake is unlocked only after that. Default: none is
   * ever open.
   */
  readonly openApprovalsUntil?:
    | ((validator: string, now: Date) => Promise<Date | undefined>)
    | undefined;
}
