/**
 * One mechanism for the directory's periodic jobs (liveness, stake release): run a sweep every
 * `intervalMs`, never two at once (a slow store or wallet must not pile sweeps up), report what a
 * sweep did when it did something, and stop cleanly.
 */

/** Where a sweep is in its life. */
export type SweepState = "running" | "closed";

/** What {@link createPeriodicSweep} needs. */
export interface PeriodicSweepOptions<T> {
  /** One sweep; resolves with what it did (e.g. addresses taken offline, stakes returned). */
  readonly run: () => Promise<readonly T[]>;
  /** Time between sweeps, in milliseconds. */
  readonly intervalMs: number;
  /** Told what each sweep did (an empty result: not called). */
  readonly onResult?: ((items: readonly T[]) => void) | undefined;
  /** Told when a timed sweep fails; the next sweep tries again. */
  readonly onError?: ((error: unknown) => void) | undefined;
}

/** A running sweep; `close()` stops it and waits for a sweep in progress. */
export interface PeriodicSweep<T> {
  readonly state: SweepState;
  /** Runs one sweep now (also what the timer does), or joins the one in progress. */
  sweep(): Promise<readonly T[]>;
  /** Stops the timer and waits for the running sweep. Safe to call twice. */
  close(): Promise<void>;
}

/** Starts sweeping every `intervalMs`. The timer does not keep the process alive. */
export function createPeriodicSweep<T>(options: PeriodicSweepOptions<T>): PeriodicSweep<T> {
  let state: SweepState = "running";
  let running: Promise<readonly T[]> | undefined;

  const sweep = (): Promise<readonly T[]> => {
    running ??= options
      .run()
      .then((items) => {
        if (items.length > 0) options.onResult?.(items);
        return items;
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
