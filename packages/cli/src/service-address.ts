/**
 * Where the CLI finds a Tessera server's address, which signed calls name as their target: a
 * flag, an environment variable, or the server's key file in a devnet's data directory.
 */
import { existsSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isAddress } from "@tessera/identity/address";
import { InvalidKeyFileError, readKeyFile } from "@tessera/identity/key-file";
import { CliError } from "./cli-error.js";

/**
 * The repository the CLI was built in (`<repo>/packages/cli/dist/*.js` -> `<repo>`), where the
 * devnet keeps its data by default (`<repo>/.tessera-data`).
 */
export const CLI_REPO_ROOT: string = fileURLToPath(new URL("../../../", import.meta.url));

/**
 * A Tessera address (`tsr1…`, checksum verified).
 * @throws CliError otherwise.
 */
export function parseAddress(text: string, what = "address"): string {
  if (!isAddress(text)) {
    throw new CliError(`${what} is not a valid address (tsr1…): ${JSON.stringify(text)}`);
  }
  return text;
}

/** Which server, and the names of its flag and variable. */
export interface ServiceAddressNames {
  /** The devnet's name of the service and its data folder, e.g. "wallet", "job-server". */
  readonly dataFolder: string;
  /** How messages name it, e.g. "wallet", "job server". */
  readonly label: string;
  /** e.g. "--wallet-address". */
  readonly option: string;
  /** e.g. "TESSERA_WALLET_ADDRESS". */
  readonly variable: string;
}

/** Where {@link resolveServiceAddress} looks. */
export interface ServiceAddressSources {
  /** The flag's value. */
  readonly option?: string | undefined;
  /** The variable named by {@link ServiceAddressNames.variable}, and TESSERA_DATA_DIR. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Whose `.tessera-data` is the default data directory; default {@link CLI_REPO_ROOT}. */
  readonly repoRoot?: string | undefined;
}

/**
 * A server's address. In order:
 * 1. the flag;
 * 2. the environment variable;
 * 3. the address in the server's key file, `<data dir>/<data folder>/key.json`, where the data dir
 *    is `TESSERA_DATA_DIR` (relative to the working directory) when set, else
 *    `<repo>/.tessera-data` if that file exists: the devnet keeps each service's key at
 *    `<data dir>/<service>/key.json`. Only the file's public address is read; no password is
 *    needed.
 * @throws CliError when none gives a valid address.
 */
export async function resolveServiceAddress(
  names: ServiceAddressNames,
  sources: ServiceAddressSources,
): Promise<string> {
  if (sources.option) return parseAddress(sources.option, names.option);
  const fromEnv = sources.env[names.variable];
  if (fromEnv) return parseAddress(fromEnv, names.variable);
  const dataDir = sources.env.TESSERA_DATA_DIR;
  const keyFile = dataDir
    ? join(isAbsolute(dataDir) ? dataDir : resolve(dataDir), names.dataFolder, "key.json")
    : join(sources.repoRoot ?? CLI_REPO_ROOT, ".tessera-data", names.dataFolder, "key.json");
  const unknown = `the ${names.label}'s address is unknown`;
  const hint = `pass ${names.option} or set ${names.variable}`;
  if (!dataDir && !existsSync(keyFile)) {
    throw new CliError(`${unknown}: ${hint} (or TESSERA_DATA_DIR to a devnet's data directory)`);
  }
  try {
    return parseAddress((await readKeyFile(keyFile)).address, `the address in ${keyFile}`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new CliError(`${unknown}: no key file at ${keyFile}; ${hint}`);
    }
    if (error instanceof InvalidKeyFileError) {
      throw new CliError(`cannot read the ${names.label}'s address: ${error.message}`);
    }
    throw error;
  }
}
