/**
 * The wallet commands' arguments: checked and normalized before anything is sent, so a typo is a
 * clear one-line error instead of a request. Money stays a decimal string throughout.
 */
import { TransactionKind } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { CliError } from "./cli-error.js";
import { resolveServiceAddress } from "./service-address.js";

export { CLI_REPO_ROOT, parseAddress } from "./service-address.js";

/** The wallet URL when neither --wallet-url nor TESSERA_WALLET_URL is given (the devnet's). */
export const DEFAULT_WALLET_URL = "http://127.0.0.1:7005";

/** Client-chosen ids (transfer, escrow): 1-128 characters of [A-Za-z0-9._:-], as the wallet requires. */
export const CLIENT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** Largest --limit: the wallet lowers larger page sizes to this anyway. */
export const MAX_HISTORY_LIMIT = 1000;

/**
 * An amount of base units as typed: decimal digits only (no sign, point, exponent or spaces),
 * greater than zero. Returned as a canonical decimal string (leading zeros dropped); it is never
 * turned into a JS number.
 * @throws CliError otherwise.
 */
export function parseAmount(text: string, what = "--amount"): string {
  if (!/^[0-9]+$/.test(text)) {
    throw new CliError(
      `${what} must be a whole number of base units (digits only, e.g. 1500), got ${JSON.stringify(text)}`,
    );
  }
  const canonical = text.replace(/^0+(?=[0-9])/, "");
  if (canonical === "0") throw new CliError(`${what} must be greater than zero`);
  return canonical;
}

/**
 * A client-chosen id such as a transfer id ({@link CLIENT_ID_PATTERN}).
 * @throws CliError otherwise.
 */
export function parseClientId(text: string, what = "--id"): string {
  if (!CLIENT_ID_PATTERN.test(text)) {
    throw new CliError(
      `${what} must be 1 to 128 of A-Z, a-z, 0-9, ".", "_", ":" and "-", got ${JSON.stringify(text)}`,
    );
  }
  return text;
}

/**
 * A page size for `history --limit`: an integer from 1 to {@link MAX_HISTORY_LIMIT}.
 * @throws CliError otherwise.
 */
export function parseLimit(text: string): number {
  if (!/^[0-9]+$/.test(text)) throw new CliError(`--limit must be a whole number, got ${text}`);
  const limit = Number(text);
  if (limit < 1 || limit > MAX_HISTORY_LIMIT) {
    throw new CliError(`--limit must be between 1 and ${MAX_HISTORY_LIMIT}, got ${text}`);
  }
  return limit;
}

/** The --kind names: the TransactionKind values, lowercase with "-" (e.g. "escrow-release"). */
export const TRANSACTION_KIND_NAMES: ReadonlyMap<string, TransactionKind> = new Map(
  Object.entries(TransactionKind)
    .filter(
      (entry): entry is [string, TransactionKind] =>
        typeof entry[1] === "number" && entry[1] !== TransactionKind.UNSPECIFIED,
    )
    .map(([name, value]) => [kindName(value, name), value]),
);

/** The CLI name of a transaction kind ("escrow-release"), or "unknown(<n>)". */
export function kindName(kind: TransactionKind, enumKey = TransactionKind[kind]): string {
  return enumKey === undefined ? `unknown(${kind})` : enumKey.toLowerCase().replaceAll("_", "-");
}

/**
 * Adds the kinds in `text` (comma-separated names such as "transfer,escrow-lock"; "_" works
 * like "-") to `previous`: a commander option parser, so --kind may also be repeated.
 * @throws CliError for an unknown name, listing the known ones.
 */
export function parseKinds(
  text: string,
  previous: readonly TransactionKind[] = [],
): TransactionKind[] {
  const kinds = [...previous];
  for (const part of text.split(",")) {
    const name = part.trim().toLowerCase().replaceAll("_", "-");
    if (name === "") continue;
    const kind = TRANSACTION_KIND_NAMES.get(name);
    if (kind === undefined) {
      throw new CliError(
        `unknown --kind ${JSON.stringify(part.trim())}: use ${[...TRANSACTION_KIND_NAMES.keys()].join(", ")}`,
      );
    }
    if (!kinds.includes(kind)) kinds.push(kind);
  }
  return kinds;
}

/**
 * The wallet's URL: `option` (--wallet-url), else TESSERA_WALLET_URL, else {@link DEFAULT_WALLET_URL}.
 */
export function resolveWalletUrl(
  option: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string {
  return option || env.TESSERA_WALLET_URL || DEFAULT_WALLET_URL;
}

/** Where {@link resolveWalletAddress} looks. */
export interface WalletAddressSources {
  /** --wallet-address. */
  readonly option?: string | undefined;
  /** TESSERA_WALLET_ADDRESS and TESSERA_DATA_DIR. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Whose `.tessera-data` is the default data directory; default {@link CLI_REPO_ROOT}. */
  readonly repoRoot?: string | undefined;
}

/**
 * The wallet server's address, which signed calls name as their target. In order:
 * 1. `--wallet-address`;
 * 2. `TESSERA_WALLET_ADDRESS`;
 * 3. the address in the wallet's key file, `<data dir>/wallet/key.json`, where the data dir is
 *    `TESSERA_DATA_DIR` (relative to the working directory) when set, else `<repo>/.tessera-data`
 *    if that file exists: the devnet keeps each service's key at `<data dir>/<service>/key.json`.
 *    Only the file's public address is read; no password is needed.
 * @throws CliError when none gives a valid address.
 */
export function resolveWalletAddress(sources: WalletAddressSources): Promise<string> {
  return resolveServiceAddress(
    {
      dataFolder: "wallet",
      label: "wallet",
      option: "--wallet-address",
      variable: "TESSERA_WALLET_ADDRESS",
    },
    sources,
  );
}
