/**
 * The periodic stake release: every `intervalMs`, {@link Directory.releaseDueStakes} unlocks in
 * the wallet the stakes of validators that left the active set once their open approvals have
 * settled, and retries unlocks the wallet could not take earlier.
 */
import type { Directory } from "./directory.js";
import { createPeriodicSweep, type PeriodicSweep } from "./periodic-sweep.js";

/** What {@link createStakeReleaseSweeper} needs. */
export interface StakeReleaseSweeperOptions {
  readonly directory: Pick<Directory, "releaseDueStakes">;
  /** Time between sweeps, in milliseconds. */
  readonly intervalMs: number;
  /** Told the stake ids each sweep returned (none: not called). */
  readonly onReleased?: ((stakeIds: readonly string[]) => void) | undefined;
  /** Told when a sweep fails (wallet or store unreachable); the next sweep tries again. */
  readonly onError?: ((error: unknown) => void) | undefined;
}

/** A running sweep; `sweep()` resolves with the stake ids returned. */
export type StakeReleaseSweeper = PeriodicSweep<string>;

/** Starts sweeping every `intervalMs`. The timer does not keep the process alive. */
export function createStakeReleaseSweeper(
  options: StakeReleaseSweeperOptions,
): StakeReleaseSweeper {
  return createPeriodicSweep({
    run: () => options.directory.releaseDueStakes(),
    intervalMs: options.intervalMs,
    onResult: options.onReleased,
    onError: options.onError,
  });
}
