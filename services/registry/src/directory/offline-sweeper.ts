/**
 * The periodic liveness sweep: every `intervalMs`, {@link Directory.markOffline} closes the online
 * session of nodes whose heartbeats stopped. Entries already read as offline the moment the
 * timeout passes (liveness is computed on read); the sweep keeps the stored sessions, and so the
 * uptime ratios, tidy and reports who dropped out.
 */
import type { Directory } from "./directory.js";
import { createPeriodicSweep, type PeriodicSweep, type SweepState } from "./periodic-sweep.js";

/** Where the sweeper is in its life. */
export type OfflineSweeperState = SweepState;

/** What {@link createOfflineSweeper} needs. */
export interface OfflineSweeperOptions {
  readonly directory: Pick<Directory, "markOffline">;
  /** Time between sweeps; default the directory's heartbeat interval is a good choice. */
  readonly intervalMs: number;
  /** Told the addresses each sweep took offline (none: not called). */
  readonly onOffline?: ((addresses: readonly string[]) => void) | undefined;
  /** Told when a sweep fails (the store was unreachable); the next sweep tries again. */
  readonly onError?: ((error: unknown) => void) | undefined;
}

/** A running sweep; `sweep()` resolves with the addresses taken offline. */
export type OfflineSweeper = PeriodicSweep<string>;

/** Starts sweeping every `intervalMs`. The timer does not keep the process alive. */
export function createOfflineSweeper(options: OfflineSweeperOptions): OfflineSweeper {
  return createPeriodicSweep({
    run: () => options.directory.markOffline(),
    intervalMs: options.intervalMs,
    onResult: options.onOffline,
    onError: options.onError,
  });
}
