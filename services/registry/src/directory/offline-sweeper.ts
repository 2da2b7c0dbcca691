/**
 * The periodic liveness sweep: every `intervalMs`, {@link Directory.markOffline} closes the online
 * session of nodes whose heartbeats stopped. Entries already read as offline the moment the
 * timeout passes (liveness is computed on read); the sweep keeps the stored sessions, and so the
 * uptime ratios, tidy and reports who dropped out.
 */
import type { Directory } from "./directory.js";

/** Where the sweeper is in its life. */
export type OfflineSweeperState = "running" | "closed";

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

/** A running sweep; `close()` stops it and waits for a sweep in progress. */
export interface OfflineSweeper {
  readonly state: OfflineSweeperState;
  /** Runs one sweep now (also what the timer does); resolves with the addresses taken offline. */
  sweep(): Promise<readonly string[]>;
  /** Stops the timer and waits for the running sweep. Safe to call twice. */
  close(): Promise<void>;
}

/** Starts sweeping every `intervalMs`. The timer does not keep the process alive. */
export function createOfflineSweeper(options: OfflineSweeperOptions): OfflineSweeper {
  let state: OfflineSweeperState = "running";
  let running: Promise<readonly string[]> | undefined;

  const sweep = (): Promise<readonly string[]> => {
    // One sweep at a time: a slow store must not pile sweeps up.
    running ??= options.directory
      .markOffline()
      .then((addresses) => {
        if (addresses.length > 0) options.onOffline?.(addresses);
        return addresses;
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
