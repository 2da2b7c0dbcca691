/**
 * One-at-a-time sections per key, inside this process: the artifact store uses one per upload so
 * that two streams of the same upload (a client that resumed while its old stream still runs) never
 * write the partial file at once.
 */
export interface KeyedMutex {
  /** Runs `fn` once every earlier section of `key` has finished; settles like `fn`. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** Keys with a section running or waiting. */
  readonly size: number;
  /** Resolves once no section runs or waits (sections started meanwhile included). */
  idle(): Promise<void>;
}

/** A {@link KeyedMutex}; keys are forgotten as soon as nothing waits on them. */
export function createKeyedMutex(): KeyedMutex {
  const tails = new Map<string, Promise<void>>();
  return {
    async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
      const previous = tails.get(key) ?? Promise.resolve();
      let release!: () => void;
      const done = new Promise<void>((resolve) => {
        release = resolve;
      });
      const tail = previous.then(() => done);
      tails.set(key, tail);
      await previous;
      try {
        return await fn();
      } finally {
        release();
        if (tails.get(key) === tail) tails.delete(key);
      }
    },
    get size() {
      return tails.size;
    },
    async idle() {
      while (tails.size > 0) await Promise.all(tails.values());
    },
  };
}
