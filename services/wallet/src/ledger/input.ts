/**
 * The ledger's input rules: amounts, client-chosen ids, addresses and free text. Every check
 * fails with INVALID_ARGUMENT naming the field (see ./errors.ts), before anything is read or
 * written.
 */
import { isAddress } from "@tessera/identity/address";
import { invalidArgument } from "./errors.js";

/** The largest amount one operation moves: 2^64 - 1 base units. */
export const MAX_AMOUNT = 2n ** 64n - 1n;

/** Longest memo, reason or reference id, in characters. */
export const MAX_TEXT_CHARS = 256;

/** Client-chosen ids: 1-128 characters of [A-Za-z0-9._:-]. */
const ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Canonical decimal integers: no sign, no leading zeros, no point, no exponent, no spaces. */
const DECIMAL = /^(?:0|[1-9][0-9]*)$/;

/**
 * Prefixes of the transaction ids the wallet derives itself ("escrow:<id>:lock",
 * "stake:<id>:unlock", "genesis:<address>"): a client-chosen transaction id (transfer, faucet,
 * slash) may not start with one, so it can never take an id the wallet needs later.
 */
export const RESERVED_ID_PREFIXES: readonly string[] = ["escrow:", "stake:", "genesis:"];

/**
 * Parses an amount of base units: a canonical decimal integer string, greater than zero and at
 * most {@link MAX_AMOUNT}.
 * @throws WalletError invalid_argument naming `field` (negative, zero, empty, non-numeric,
 * signed, fractional, leading zeros, or above 2^64 - 1).
 */
export function parseAmount(field: string, text: string): bigint {
  const value = parseShare(field, text);
  if (value === 0n) throw invalidArgument(field, "must be greater than zero");
  return value;
}

/**
 * Parses a share of a payment tree: like {@link parseAmount}, but zero is allowed.
 * @throws WalletError invalid_argument naming `field`.
 */
export function parseShare(field: string, text: string): bigint {
  if (typeof text !== "string" || text === "") {
    throw invalidArgument(field, "an amount is required (a decimal string of base units)");
  }
  if (text.startsWith("-"))
    throw invalidArgument(field, `must not be negative, got "${clip(text)}"`);
  if (!DECIMAL.test(text)) {
    throw invalidArgument(
      field,
      `must be a decimal integer of base units without sign, point or leading zeros, got "${clip(text)}"`,
    );
  }
  // 2^64 - 1 has 20 digits: a longer text is over the bound without converting it.
  const value = text.length > 20 ? MAX_AMOUNT + 1n : BigInt(text);
  if (value > MAX_AMOUNT) {
    throw invalidArgument(field, `must be at most 2^64 - 1 (${MAX_AMOUNT}) base units`);
  }
  return value;
}

/**
 * Checks a client-chosen id (1-128 characters of [A-Za-z0-9._:-]).
 * @throws WalletError invalid_argument naming `field`.
 */
export function checkId(field: string, id: string): string {
  if (typeof id !== "string" || !ID.test(id)) {
    throw invalidArgument(field, "must be 1-128 characters of [A-Za-z0-9._:-]");
  }
  return id;
}

/**
 * Checks a client-chosen transaction id: an id ({@link checkId}) that does not start with a
 * {@link RESERVED_ID_PREFIXES} prefix.
 */
export function checkTransactionId(field: string, id: string): string {
  checkId(field, id);
  const reserved = RESERVED_ID_PREFIXES.find((prefix) => id.startsWith(prefix));
  if (reserved !== undefined) {
    throw invalidArgument(field, `must not start with "${reserved}" (reserved for the wallet)`);
  }
  return id;
}

/**
 * Checks an address (see @tessera/identity/address).
 * @throws WalletError invalid_argument naming `field`.
 */
export function checkAddress(field: string, address: string): string {
  if (typeof address !== "string" || address === "") {
    throw invalidArgument(field, "an address is required");
  }
  if (!isAddress(address)) throw invalidArgument(field, `"${clip(address)}" is not an address`);
  return address;
}

/**
 * Checks free text (memo, reason, reference id): at most {@link MAX_TEXT_CHARS} characters.
 * @throws WalletError invalid_argument naming `field`.
 */
export function checkText(field: string, text: string): string {
  if (typeof text !== "string") throw invalidArgument(field, "must be text");
  if ([...text].length > MAX_TEXT_CHARS) {
    throw invalidArgument(field, `must be at most ${MAX_TEXT_CHARS} characters`);
  }
  return text;
}

/** `text` shortened for an error message (never echo long input back). */
function clip(text: string): string {
  return text.length <= 40 ? text : `${text.slice(0, 40)}…`;
}
