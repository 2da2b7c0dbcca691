/**
 * Shared by the processes of the end-to-end jobs benchmark (./jobs.bench.ts): the clock every
 * process reads, the messages children and the parent exchange over the IPC channel, and the
 * per-job record a child (bench node or BullMQ worker) keeps.
 *
 * Clock: `process.hrtime` reads CLOCK_MONOTONIC on Linux, one clock for every process of the
 * machine, with nanosecond resolution; times cross processes as milliseconds (a double with
 * microsecond steps). Date.now() would round to whole milliseconds, too coarse for a 2 ms aim.
 */
/** Milliseconds on the machine-wide monotonic clock, in microsecond steps. */
export function nowMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

/** What the parent tells a child. */
export type ParentMessage =
  /** live: report each job when it completes ("done"); otherwise keep records for "flush". */
  | { readonly type: "live"; readonly live: boolean }
  /** Answer "records" with every record kept since the last flush. */
  | { readonly type: "flush" }
  /** Close connections and exit. */
  | { readonly type: "stop" };

/** One job as a child saw it: id, when it had the job in hand, when the broker confirmed it done. */
export type JobRecord = readonly [id: string, startMs: number, doneMs: number];

/** What a child tells the parent. */
export type ChildMessage =
  | { readonly type: "ready"; readonly name: string }
  | { readonly type: "done"; readonly record: JobRecord }
  | {
      readonly type: "records";
      readonly records: readonly JobRecord[];
      /** Calls sent again since the last flush, by name (see ./jobs-node.ts). */
      readonly resent: Readonly<Record<string, number>>;
    }
  | { readonly type: "failed"; readonly id: string; readonly message: string };

/** Sends `message` to the parent (children are forked with an IPC channel). */
export function tellParent(message: ChildMessage): void {
  process.send?.(message);
}

/**
 * The child's side of the IPC protocol: keeps job records, answers "live" / "flush", and calls
 * `stop` on "stop" or when the parent goes away.
 */
export function serveParent(
  stop: () => Promise<void>,
  takeResent: () => Record<string, number> = () => ({}),
): { done(record: JobRecord): void } {
  let live = false;
  let records: JobRecord[] = [];
  let stopping = false;
  const quit = () => {
    if (stopping) return;
    stopping = true;
    void stop().finally(() => process.exit(0));
  };
  process.on("message", (message: ParentMessage) => {
    if (message.type === "live") live = message.live;
    else if (message.type === "flush") {
      tellParent({ type: "records", records, resent: takeResent() });
      records = [];
    } else if (message.type === "stop") quit();
  });
  process.on("disconnect", quit);
  return {
    done(record) {
      if (live) tellParent({ type: "done", record });
      else records.push(record);
    },
  };
}

/** The q-quantile (nearest rank) of `values`; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}
