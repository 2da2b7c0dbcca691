/**
 * The validator role's bond: before it registers, a validator locks its stake in the wallet
 * naming its registry as arbiter (WalletService LockStake), and registers with that stake.
 *
 * Idempotent across restarts: the validator's stakes have the ids `validator:<address>:1`,
 * `:2`, … A restart reuses the first one still locked for this registry, unless the registry
 * holds it as the stake of an earlier, ended registration (owed back, not reusable); when none
 * is usable it locks the next unused id. A crash between the lock and the registration therefore
 * finds the same stake again instead of locking a second one.
 */
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import {
  type RegistryService,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { type Stake, StakeState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import type { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { PROTOCOL_VERSION } from "./validation/protocol-version.js";

/** What {@link lockValidatorStake} needs. */
export interface ValidatorStakeRequest {
  /** The wallet, with calls signed by the validator's key. */
  readonly wallet: Client<typeof WalletService>;
  /** The registry the validator registers with. */
  readonly registry: Client<typeof RegistryService>;
  /** The validator's address (the staker). */
  readonly validatorAddress: string;
  /** The registry's address (the arbiter). */
  readonly registryAddress: string;
  /** Base units to lock when a new stake is needed; greater than 0. */
  readonly amount: bigint;
  /** Deadline of each call, in milliseconds. */
  readonly timeoutMs: number;
}

/** The stake a validator registers with. */
export interface LockedValidatorStake {
  readonly stakeId: string;
  /** Base units it holds now (less than asked if the registry slashed it). */
  readonly amount: bigint;
}

/** Most stake ids tried before giving up (each ended registration uses one). */
const MAX_STAKES = 1000;

/** The id of a validator's `n`-th stake. */
export function validatorStakeId(validatorAddress: string, n: number): string {
  return `validator:${validatorAddress}:${n}`;
}

/**
 * Finds or locks the validator's stake for its registry (see the file comment).
 * @throws ConnectError from the wallet or the registry, e.g. failed_precondition when the
 * validator's available balance is below `amount`.
 */
export async function lockValidatorStake(
  request: ValidatorStakeRequest,
): Promise<LockedValidatorStake> {
  const { wallet, validatorAddress, registryAddress, amount, timeoutMs } = request;
  const ended = await endedRegistrationStake(request);
  for (let n = 1; n <= MAX_STAKES; n++) {
    const stakeId = validatorStakeId(validatorAddress, n);
    const stake = await readStake(wallet, stakeId, timeoutMs);
    if (stake === undefined) {
      const locked = await wallet.lockStake(
        {
          protocolVersion: PROTOCOL_VERSION,
          stakeId,
          stakerAddress: validatorAddress,
          amount: amount.toString(),
          arbiterAddress: registryAddress,
        },
        { timeoutMs },
      );
      return { stakeId, amount: BigInt(locked.stake?.amount ?? amount) };
    }
    const usable =
      stake.state === StakeState.LOCKED &&
      stake.stakerAddress === validatorAddress &&
      stake.arbiterAddress === registryAddress &&
      stakeId !== ended;
    if (usable) return { stakeId, amount: BigInt(stake.amount) };
  }
  throw new ConnectError(
    `validator ${validatorAddress} has used all ${MAX_STAKES} stake ids`,
    Code.ResourceExhausted,
  );
}

/** The stake of the validator's ended (inactive or slashed) registration, which is owed back. */
async function endedRegistrationStake(request: ValidatorStakeRequest): Promise<string | undefined> {
  try {
    const { validator } = await request.registry.getValidatorInfo(
      { protocolVersion: PROTOCOL_VERSION, validatorAddress: request.validatorAddress },
      { timeoutMs: request.timeoutMs },
    );
    if (validator === undefined || validator.status === ValidatorStatus.ACTIVE) return undefined;
    return validator.stakeId || undefined;
  } catch (error) {
    if (ConnectError.from(error).code === Code.NotFound) return undefined;
    throw error;
  }
}

async function readStake(
  wallet: Client<typeof WalletService>,
  stakeId: string,
  timeoutMs: number,
): Promise<Stake | undefined> {
  try {
    const { stake } = await wallet.getStake(
      { protocolVersion: PROTOCOL_VERSION, stakeId },
      { timeoutMs },
    );
    return stake;
  } catch (error) {
    if (ConnectError.from(error).code === Code.NotFound) return undefined;
    throw error;
  }
}
