/** Waiting between attempts: abortable sleeps and capped exponential backoff with jitter. */

/**
 * Resolves after `ms`, or at once (without rejecting) when `signal` aborts: loops re-check their
 * own state after every wait.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Options of {@link Backoff}. */
export interface BackoffOptions {
  /** First delay; default 250 ms. */
  readonly initialMs?: number | undefined;
  /** Longest delay; default 30,000 ms. */
  readonly maxMs?: number | undefined;
  /** Source of randomness in [0, 1); default Math.random. */
  readonly random?: (() => number) | undefined;
}

/**
 * Delays that double from `initialMs` up to `maxMs`, each drawn uniformly from its upper half
 * (so many nodes restarting together do not retry in step); `reset()` after a success.
 */
export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  #failures = 0;

  constructor(options: BackoffOptions = {}) {
    this.#initialMs = options.initialMs ?? 250;
    this.#maxMs = options.maxMs ?? 30_000;
    this.#random = options.random ?? Math.random;
  }

  /** The delay before the next attempt; each call counts one more failure. */
  next(): number {
    const ceiling = Math.min(this.#maxMs, this.#initialMs * 2 ** Math.min(this.#failures, 30));
    this.#failures++;
    return Math.round(ceiling / 2 + (ceiling / 2) * this.#random());
  }

  /** Back to the first delay. */
  reset(): void {
    this.#failures = 0;
  }
}
