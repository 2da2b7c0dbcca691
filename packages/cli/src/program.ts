/**
 * The `tessera` command line: builds the command tree and runs it against a {@link CliContext}.
 * Each command group lives in ./commands/<group>.ts and registers itself here
 * (keys, wallet, job, artifact).
 */
import { createRequire } from "node:module";
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { Command, CommanderError } from "commander";
import type { CliContext } from "./cli-context.js";
import { registerArtifactCommands } from "./commands/artifact.js";
import { registerInferCommands } from "./commands/infer.js";
import { registerJobCommands } from "./commands/job.js";
import { registerKeysCommands } from "./commands/keys.js";
import { registerWalletCommands } from "./commands/wallet.js";

/** Builds the `tessera` program; errors surface from `parseAsync` instead of exiting. */
export function createProgram(context: CliContext): Command {
  const { version } = createRequire(import.meta.url)("../package.json") as { version: string };
  const program = new Command("tessera")
    .description("Tessera: rent and provide machine-learning compute")
    .version(version, "-V, --version")
    .exitOverride()
    .configureOutput({
      writeOut: (text) => context.stdout.write(text),
      writeErr: (text) => context.stderr.write(text),
      outputError: (text, write) => write(`tessera: ${oneLine(text)}\n`),
    })
    .showSuggestionAfterError(true);
  registerKeysCommands(program, context);
  registerWalletCommands(program, context);
  registerJobCommands(program, context);
  registerArtifactCommands(program, context);
  registerInferCommands(program, context);
  return program;
}

/**
 * Runs the CLI on `args` (without node and script path) and returns the exit code: 0 on
 * success, 1 on any error, after printing the error as one line on stderr
 * (`tessera: error: ...`; a failed call: `tessera: error: <connect code>: <message>`, e.g.
 * `tessera: error: failed_precondition: insufficient available balance`). Set TESSERA_DEBUG=1 for
 * the stack of an unexpected error.
 */
export async function runCli(args: readonly string[], context: CliContext): Promise<number> {
  const program = createProgram(context);
  try {
    await program.parseAsync([...args], { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has already printed its message (or the help or version).
      return error.exitCode === 0 ? 0 : 1;
    }
    const message =
      error instanceof ConnectError
        ? `${codeToString(error.code)}: ${error.rawMessage}`
        : error instanceof Error
          ? error.message
          : String(error);
    context.stderr.write(`tessera: error: ${oneLine(message)}\n`);
    if (context.env.TESSERA_DEBUG === "1" && error instanceof Error && error.stack) {
      context.stderr.write(`${error.stack}\n`);
    }
    return 1;
  }
}

function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, " ");
}
