/**
 * Runs the engine's sweep on an interval, never two at once; a failed sweep is logged and the
 * next one runs on time.
 */
import type { Logger } from "@tessera/runtime";

/** See the module comment. */
export interface Sweeper {
  /** Runs a sweep now (or waits for the running one); resolves when it is done. */
  tick(): Promise<void>;
  /** Stops the interval and waits for a running sweep. Safe to call twice. */
  close(): Promise<void>;
}

/** Starts sweeping every `intervalMs`. */
export function createSweeper(options: {
  intervalMs: number;
  sweep: () => Promise<void>;
  logger: Logger;
}): Sweeper {
  let running: Promise<void> | undefined;
  const tick = () => {
    running ??= options
      .sweep()
      .catch((error) => options.logger.error({ err: error }, "sweep failed"))
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const timer = setInterval(() => void tick(), options.intervalMs);
  timer.unref();
  return {
    tick,
    async close() {
      clearInterval(timer);
      await running;
    },
  };
}
