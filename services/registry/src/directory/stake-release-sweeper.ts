/**
 * The periodic stake release: every `intervalMs`, {@link Directory.releaseDueStakes} unlocks in
 * the wallet the stakes of validators that left the active set once their open approvals have
 * settled, and retries unlocks the wallet could not take earlier.
 */
import type { Directory } from "./directory.js";

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

/** A running sweep; `close()` stops it and waits for a sweep in progress. */
export interface StakeReleaseSweeper {
  readonly state: "running" | "closed";
  /** Runs one sweep now (also what the timer does); resolves with the stake ids returned. */
  sweep(): Promise<readonly string[]>;
  /** Stops the timer and waits for the running sweep. Safe to call twice. */
  close(): Promise<void>;
}

/** Starts sweeping every `intervalMs`. The timer does not keep the process alive. */
export function createStakeReleaseSweeper(
  options: StakeReleaseSweeperOptions,
): StakeReleaseSweeper {
  let state: "running" | "closed" = "running";
  let running: Promise<readonly string[]> | undefined;

  const sweep = (): Promise<readonly string[]> => {
    // One sweep at a time: a slow wallet must not pile sweeps up.
    running ??= options.directory
      .releaseDueStakes()
      .then((stakeIds) => {
        if (stakeIds.length > 0) options.onReleased?.(stakeIds);
        return stakeIds;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };

  const timer = setInterval(() => {
    sweep().catch((error: unknown) => options.onError?.(error));
  }, options.intervalMs);
  timer.unref();

  return {
    get state() {
      return state;
    },
    sweep,
    async close() {
      if (state === "closed") return;
      state = "closed";
      clearInterval(timer);
      await running?.catch(() => undefined);
    },
  };
}
