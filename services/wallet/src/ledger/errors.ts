/**
 * What went wrong in the wallet's ledger, independent of any transport. The wallet service maps
 * each kind to one Connect code in `toConnectError`:
 *
 * | kind                  | code                | meaning                                               |
 * |-----------------------|---------------------|-------------------------------------------------------|
 * | `invalid_argument`    | INVALID_ARGUMENT    | bad amount, id, address or payment tree               |
 * | `not_found`           | NOT_FOUND           | unknown escrow or stake                               |
 * | `already_exists`      | ALREADY_EXISTS      | an id reused with a different body                    |
 * | `failed_precondition` | FAILED_PRECONDITION | insufficient funds, wrong state, not yet expired, bad validation |
 * | `permission_denied`   | PERMISSION_DENIED   | the caller is not the payer, arbiter or owner         |
 * | `resource_exhausted`  | RESOURCE_EXHAUSTED  | over a faucet limit                                   |
 * | `unavailable`         | UNAVAILABLE         | the validator set cannot be read                      |
 * | `unimplemented`       | UNIMPLEMENTED       | the faucet is disabled                                |
 */
export type WalletErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "permission_denied"
  | "resource_exhausted"
  | "unavailable"
  | "unimplemented";

/**
 * Finer reasons inside a kind, for callers and tests that need to tell them apart (the message
 * says the same in words).
 */
export type WalletErrorReason =
  | "insufficient_funds"
  | "escrow_not_held"
  | "not_expired"
  | "invalid_validation"
  | "stake_not_locked"
  | "faucet_limit";

/** A ledger error: `kind` says which, `reason` refines it, the message says why in words. */
export class WalletError extends Error {
  override readonly name = "WalletError";
  readonly kind: WalletErrorKind;
  readonly reason: WalletErrorReason | undefined;

  constructor(
    kind: WalletErrorKind,
    message: string,
    options: { reason?: WalletErrorReason; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.reason = options.reason;
  }
}

/** INVALID_ARGUMENT naming `field`. */
export function invalidArgument(field: string, problem: string): WalletError {
  return new WalletError("invalid_argument", `${field}: ${problem}`);
}
