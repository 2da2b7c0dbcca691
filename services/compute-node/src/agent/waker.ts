/** A wait that ends early when someone calls {@link Waker.wake} (e.g. "send a heartbeat now"). */
export class Waker {
  #wake: (() => void) | undefined;
  #pending = false;

  /**
   * Resolves after `ms`, when `signal` aborts, or when {@link wake} is called (also a wake that
   * came while nobody was waiting, so none is lost).
   */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.#pending || signal.aborted) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.#wake = done;
    });
  }

  /** Ends the current wait, or the next one at once. */
  wake(): void {
    if (this.#wake === undefined) this.#pending = true;
    else this.#wake();
  }
}
