/**
 * `tessera keys ...`: create, list and show the keys in `$TESSERA_HOME/keys` (default
 * `~/.tessera/keys`). Secrets are never printed.
 */
import {
  createKeystore,
  type KeyListing,
  type Keystore,
  resolveTesseraHome,
} from "@tessera/identity/keystore";
import type { Command } from "commander";
import type { CliContext } from "../cli-context.js";
import { CliError } from "../cli-error.js";
import { promptPasswords, readPasswordFromStdin } from "../password.js";

interface NewKeyOptions {
  readonly passwordStdin?: boolean;
  /** false when --no-password is given (commander's negatable option). */
  readonly password: boolean;
}

/** Adds the `keys` command group to `program`. */
export function registerKeysCommands(program: Command, context: CliContext): void {
  const keys = program
    .command("keys")
    .description("create and inspect the key pairs that identify you on the network");
  const keystore = (): Keystore => createKeystore({ homeDir: resolveTesseraHome(context.env) });

  keys
    .command("new")
    .description("create a new key pair and print its address")
    .argument("<name>", "key name: 1 to 64 of a-z, 0-9, _ and -")
    .option("--password-stdin", "read the password that encrypts the key from stdin")
    .option("--no-password", "store the key unencrypted (anyone who can read the file can use it)")
    .addHelpText(
      "after",
      "\nWithout either option the password is asked for on the terminal (twice).",
    )
    .action(async (name: string, options: NewKeyOptions) => {
      const password = await newKeyPassword(name, options, context);
      const { entry } = await keystore().create(name, { password });
      context.stdout.write(
        `name: ${entry.name}\naddress: ${entry.address}\nencrypted: ${entry.encrypted ? "yes" : "no"}\nfile: ${entry.path}\n`,
      );
    });

  keys
    .command("list")
    .description("list the keys: name, address, and whether each is encrypted")
    .action(async () => {
      const store = keystore();
      const listings = await store.list();
      if (listings.length === 0) {
        context.stderr.write(
          `no keys in ${store.keysDir}; create one with "tessera keys new <name>"\n`,
        );
        return;
      }
      context.stdout.write(formatListing(listings));
      for (const row of listings) {
        if (!row.ok) context.stderr.write(`tessera: warning: ${oneLine(row.problem)}\n`);
      }
    });

  keys
    .command("show")
    .description("print a key's address")
    .argument("<name>", "key name")
    .action(async (name: string) => {
      const entry = await keystore().describe(name);
      context.stdout.write(`${entry.address}\n`);
    });
}

async function newKeyPassword(
  name: string,
  options: NewKeyOptions,
  context: CliContext,
): Promise<string | undefined> {
  if (options.passwordStdin && !options.password) {
    throw new CliError("use either --password-stdin or --no-password, not both");
  }
  if (!options.password) return undefined;
  if (options.passwordStdin) return readPasswordFromStdin(context.stdin);
  if (!context.stdin.isTTY) {
    throw new CliError(
      "stdin is not a terminal: pass --password-stdin to pipe the password in, or --no-password",
    );
  }
  const [password, again] = await promptPasswords(
    [`Password to encrypt key "${name}": `, "Repeat the password: "],
    context.stdin,
    context.stderr,
  );
  if (!password) {
    throw new CliError("empty password: use --no-password to store the key unencrypted");
  }
  if (again !== password) throw new CliError("the passwords do not match");
  return password;
}

function formatListing(listings: readonly KeyListing[]): string {
  const width = Math.max(...listings.map((row) => row.name.length));
  let text = "";
  for (const row of listings) {
    if (row.ok) {
      text += `${row.name.padEnd(width)}  ${row.address}  ${row.encrypted ? "encrypted" : "plain"}\n`;
    }
  }
  return text;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ");
}
