/**
 * What a command may touch: the environment, the three standard streams and Ctrl-C. main.ts
 * builds it from `process`; nothing else in the CLI reads `process` directly.
 */
import type { Readable, Writable } from "node:stream";

/** Standard input: a TTY when `isTTY` is true (then `setRawMode` exists). */
export type CliInput = Readable & {
  readonly isTTY?: boolean | undefined;
  setRawMode?: ((mode: boolean) => unknown) | undefined;
};

/** The CLI's view of its process. */
export interface CliContext {
  /** Environment variables (TESSERA_HOME). */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdin: CliInput;
  /** Results (addresses, lists): what scripts read. */
  readonly stdout: Writable;
  /** Prompts, warnings and errors. */
  readonly stderr: Writable;
  /**
   * Calls `handler` on the first Ctrl-C (SIGINT) instead of ending the process, until the
   * returned function is called; a second Ctrl-C ends the process as usual. Commands that follow
   * something long (a job) use it to stop cleanly. Absent in tests.
   */
  readonly onInterrupt?: ((handler: () => void) => () => void) | undefined;
}
