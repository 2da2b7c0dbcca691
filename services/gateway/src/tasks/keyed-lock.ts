/**
 * Serialises work per key: calls for one key run one after another, calls for different keys
 * interleave freely. Each task's transitions run under its request id, so an await in the middle
 * of one (a registry or wallet call) never lets another transition see a half-made change.
 */

/** See the module comment. */
export interface KeyedLock {
  /** Runs `body` once every earlier call for `key` has finished; resolves to its result. */
  run<T>(key: string, body: () => Promise<T>): Promise<T>;
}

/** A {@link KeyedLock} that forgets a key once nothing waits on it. */
export function createKeyedLock(): KeyedLock {
  const tails = new Map<string, Promise<unknown>>();
  return {
    run(key, body) {
      const previous = tails.get(key) ?? Promise.resolve();
      const result = previous.then(body, body);
      const tail = result.then(
        () => undefined,
        () => undefined,
      );
      tails.set(key, tail);
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key);
      });
      return result;
    },
  };
}
