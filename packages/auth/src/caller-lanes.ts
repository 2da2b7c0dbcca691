/**
 * First-come-first-served lanes per caller. A caller's nonces must reach the high-water store in
 * increasing order, but verification awaits (the caller's standing, the first stream message, a
 * signature check on the thread pool, a pooled database connection), so two calls of one caller
 * can overtake each other between arriving and recording their nonce, and the later nonce would
 * make the earlier call fail as stale. A lane keeps arrival order for that last step.
 */

/** One call's place in its caller's lane. */
export interface LaneTicket {
  /** Resolves once every call that joined the lane earlier has called `done()`. */
  turn(): Promise<void>;
  /** Leaves the lane (idempotent); the next call's turn may come. Call it on every path. */
  done(): void;
}

/** Lanes keyed by caller. */
export interface CallerLanes {
  /** Joins `caller`'s lane, synchronously, behind every call that joined it before. */
  join(caller: string): LaneTicket;
  /** Callers with a call in their lane (for tests: lanes are removed when they empty). */
  readonly size: number;
}

/** Creates an empty set of lanes. */
export function createCallerLanes(): CallerLanes {
  const tails = new Map<string, Promise<void>>();
  return {
    join(caller) {
      const previous = tails.get(caller);
      let release = () => {};
      const mine = new Promise<void>((resolve) => {
        release = resolve;
      });
      const tail = previous === undefined ? mine : previous.then(() => mine);
      tails.set(caller, tail);
      // Removed only when it settles, so a later call still waits for every earlier one.
      void tail.then(() => {
        if (tails.get(caller) === tail) tails.delete(caller);
      });
      return {
        turn: () => previous ?? Promise.resolve(),
        done: () => release(),
      };
    },
    get size() {
      return tails.size;
    },
  };
}
