/**
 * What a command may touch: the environment and the three standard streams. main.ts builds it
 * from `process`; nothing else in the CLI reads `process` directly.
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
}
