/**
 * Reading passwords: from a pipe (`--password-stdin`) or, on a terminal, from a prompt that does
 * not echo what is typed.
 */
import type { Writable } from "node:stream";
import type { CliInput } from "./cli-context.js";
import { CliError } from "./cli-error.js";

/** Longest password accepted from stdin, in bytes (a guard against piping a whole file). */
export const MAX_PASSWORD_BYTES = 1024;

/**
 * The password piped into `input`: everything up to end of input, minus one trailing newline
 * (`\n` or `\r\n`).
 * @throws CliError when it is empty or longer than {@link MAX_PASSWORD_BYTES}.
 */
export async function readPasswordFromStdin(input: CliInput): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of input) {
    const buffer = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : (chunk as Buffer);
    size += buffer.length;
    if (size > MAX_PASSWORD_BYTES) {
      throw new CliError(`the password on stdin is longer than ${MAX_PASSWORD_BYTES} bytes`);
    }
    chunks.push(buffer);
  }
  const password = Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
  if (password.length === 0) {
    throw new CliError("the password on stdin is empty");
  }
  return password;
}

/**
 * Asks for passwords on a terminal, one per prompt, without echoing them. Enter ends each;
 * Backspace deletes; Ctrl-C cancels (CliError "cancelled"). Keys typed ahead of a prompt are
 * kept for it.
 * @param input must be a TTY.
 */
export function promptPasswords(
  prompts: readonly string[],
  input: CliInput,
  output: Writable,
): Promise<string[]> {
  const setRawMode = input.setRawMode?.bind(input);
  if (!input.isTTY || !setRawMode) {
    return Promise.reject(new CliError("cannot prompt for a password: stdin is not a terminal"));
  }
  const answers: string[] = [];
  if (prompts.length === 0) return Promise.resolve(answers);
  // Raw mode first: whoever sees the prompt may type at once, and must not be echoed.
  setRawMode(true);
  input.setEncoding("utf8");
  input.resume();
  output.write(prompts[0] as string);
  return new Promise<string[]>((resolve, reject) => {
    let value = "";
    let inEscape = false;
    const finish = () => {
      input.off("data", onData);
      setRawMode(false);
      input.pause();
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (inEscape) {
          // Skip terminal escape sequences (arrow keys...): ESC [ params final-byte.
          if (ch !== "[" && ch >= "@" && ch <= "~") inEscape = false;
          continue;
        }
        if (ch === "\r" || ch === "\n" || ch === "\u0004") {
          output.write("\n");
          answers.push(value);
          value = "";
          if (answers.length === prompts.length) {
            finish();
            resolve(answers);
            return;
          }
          output.write(prompts[answers.length] as string);
        } else if (ch === "\u0003") {
          output.write("\n");
          finish();
          reject(new CliError("cancelled"));
          return;
        } else if (ch === "\u007f" || ch === "\b") {
          value = Array.from(value).slice(0, -1).join("");
        } else if (ch === "\u001b") {
          inEscape = true;
        } else if (ch >= " ") {
          value += ch;
        }
      }
    };
    input.on("data", onData);
  });
}
