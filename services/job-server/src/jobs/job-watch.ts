/**
 * In-process notice of job changes for StreamJobUpdates: a watcher waits until the job it follows
 * changes in this process, a poll interval passes (changes made by other replicas are only in the
 * database), or its call ends.
 */
import type { QueueChanges } from "./queue-core.js";

/** Waiting for a job's next change. */
export interface JobWatch {
  /**
   * Resolves when `jobId` changed in this process, after `timeoutMs`, or when `signal` aborts,
   * whichever comes first.
   */
  waitForChange(jobId: string, timeoutMs: number, signal: AbortSignal): Promise<void>;
  /** Wakes the watchers of every job in `changes`. */
  observe(changes: QueueChanges): void;
  /** Wakes every watcher (shutdown). */
  wakeAll(): void;
}

/** An empty watch. */
export function createJobWatch(): JobWatch {
  const waiters = new Map<string, Set<() => void>>();
  const wake = (jobId: string) => {
    const set = waiters.get(jobId);
    if (set === undefined) return;
    waiters.delete(jobId);
    for (const resolve of set) resolve();
  };
  return {
    waitForChange(jobId, timeoutMs, signal) {
      return new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
        let set = waiters.get(jobId);
        if (set === undefined) {
          set = new Set();
          waiters.set(jobId, set);
        }
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          waiters.get(jobId)?.delete(done);
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        signal.addEventListener("abort", done, { once: true });
        set.add(done);
      });
    },
    observe(changes) {
      for (const job of changes.jobs) wake(job.job_id);
    },
    wakeAll() {
      for (const jobId of [...waiters.keys()]) wake(jobId);
    },
  };
}
