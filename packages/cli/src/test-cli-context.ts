// Test-only: runs the CLI in this process against in-memory streams.
import { Readable, Writable } from "node:stream";
import type { CliContext } from "./cli-context.js";
import { runCli } from "./program.js";

/** What one in-process run printed and returned. */
export interface InProcessRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function collector(): { stream: Writable; text: () => string } {
  let text = "";
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      text += typeof chunk === "string" ? chunk : chunk.toString("utf8");
      callback();
    },
  });
  return { stream, text: () => text };
}

/** Runs `tessera <args>` with `env` as its whole environment and `input` on a non-TTY stdin. */
export async function runInProcess(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  input = "",
): Promise<InProcessRun> {
  const stdout = collector();
  const stderr = collector();
  const context: CliContext = {
    env,
    stdin: Readable.from(input === "" ? [] : [Buffer.from(input, "utf8")]),
    stdout: stdout.stream,
    stderr: stderr.stream,
  };
  const code = await runCli(args, context);
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}
