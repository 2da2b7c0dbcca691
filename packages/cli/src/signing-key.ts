/**
 * Loading a key from the keystore to sign with: its password comes from stdin
 * (`--password-stdin`) or, on a terminal, from a prompt; a plain key needs none.
 */

import type { KeyPair } from "@tessera/identity/keys";
import { createKeystore, resolveTesseraHome } from "@tessera/identity/keystore";
import type { CliContext } from "./cli-context.js";
import { CliError } from "./cli-error.js";
import { promptPasswords, readPasswordFromStdin } from "./password.js";

/** Options of {@link loadSigningKey}. */
export interface LoadSigningKeyOptions {
  /** Read the password from stdin instead of prompting (`--password-stdin`). */
  readonly passwordStdin?: boolean | undefined;
}

/**
 * The key pair named `name` in `$TESSERA_HOME/keys`. An encrypted key is decrypted with the
 * password from stdin when `passwordStdin` is set, else with one asked for on the terminal.
 * @throws CliError when the key is encrypted, stdin is not a terminal and `passwordStdin` is not
 * set; the keystore's errors (unknown name, wrong password) otherwise.
 */
export async function loadSigningKey(
  context: CliContext,
  name: string,
  options: LoadSigningKeyOptions = {},
): Promise<KeyPair> {
  const keystore = createKeystore({ homeDir: resolveTesseraHome(context.env) });
  const entry = await keystore.describe(name);
  if (!entry.encrypted) return keystore.load(name);
  let password: string;
  if (options.passwordStdin) {
    password = await readPasswordFromStdin(context.stdin);
  } else if (context.stdin.isTTY) {
    [password = ""] = await promptPasswords(
      [`Password of key "${name}": `],
      context.stdin,
      context.stderr,
    );
  } else {
    throw new CliError(
      `key "${name}" is encrypted and stdin is not a terminal: pass --password-stdin to pipe its password in`,
    );
  }
  return keystore.load(name, password);
}
