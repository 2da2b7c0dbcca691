/**
 * The job server's housekeeping loop, one tick every interval on every replica (each step locks
 * what it changes and skips rows another replica holds):
 * lapsed leases are requeued (after a start-up grace, so nodes can reconnect and renew after a
 * restart), attempts past their time limit fail, jobs past expires_at fail, silent nodes go
 * offline, due settlements are retried, and revoked leases are announced to connected nodes.
 */
import type { Logger } from "@tessera/runtime";

/** One step of a tick. */
export interface SweepStep {
  readonly name: string;
  /** Whether the step may run yet (e.g. after the start-up grace). Default always. */
  readonly ready?: () => boolean;
  readonly run: () => Promise<unknown>;
}

/** What {@link createSweeper} needs. */
export interface SweeperOptions {
  readonly intervalMs: number;
  readonly steps: readonly SweepStep[];
  readonly logger: Logger;
}

/** The running loop. */
export interface Sweeper {
  /** Runs one tick now (tests, and the first tick at start). */
  tick(): Promise<void>;
  /** Stops the loop and waits for the running tick. Safe twice. */
  close(): Promise<void>;
}

/** Starts the loop. */
export function createSweeper(options: SweeperOptions): Sweeper {
  const { steps, logger } = options;
  let running: Promise<void> | undefined;
  let closed = false;

  async function runTick(): Promise<void> {
    for (const step of steps) {
      if (closed) return;
      if (step.ready !== undefined && !step.ready()) continue;
      try {
        await step.run();
      } catch (error) {
        logger.warn({ err: error, step: step.name }, "sweep step failed");
      }
    }
  }

  const sweeper: Sweeper = {
    tick() {
      running ??= runTick().finally(() => {
        running = undefined;
      });
      return running;
    },
    async close() {
      closed = true;
      clearInterval(timer);
      await running;
    },
  };
  const timer = setInterval(() => {
    if (running === undefined && !closed) void sweeper.tick();
  }, options.intervalMs);
  timer.unref();
  return sweeper;
}
