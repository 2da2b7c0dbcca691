/**
 * An error meant for the person at the terminal: the CLI prints its message as one line and
 * exits 1, without a stack.
 */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CliError";
  }
}
