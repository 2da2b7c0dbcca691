/**
 * What went wrong in the registry's domain (directory, validator set, subnets), independent of
 * any transport. The registry service maps each kind to one Connect code in `toConnectError`:
 *
 * | kind                  | meaning                                                        |
 * |-----------------------|----------------------------------------------------------------|
 * | `invalid`             | bad input (malformed record, proof of work too weak, bad field) |
 * | `bad_signature`       | a record's signature does not verify against its key           |
 * | `not_found`           | no such node, validator, subnet or quote                       |
 * | `conflict`            | same id or sequence with a different body                      |
 * | `stale`               | a record older than the stored one                             |
 * | `failed_precondition` | wrong state (expired or used quote, other protocol version...) |
 * | `banned`              | the node is banned until `bannedUntil`                         |
 * | `permission_denied`   | the caller is not the owner, or not allowed to do this         |
 * | `unavailable`         | the wallet (fees, stakes) could not be reached or refused us   |
 */
export type DirectoryErrorKind =
  | "invalid"
  | "bad_signature"
  | "not_found"
  | "conflict"
  | "stale"
  | "failed_precondition"
  | "banned"
  | "permission_denied"
  | "unavailable";

/** A domain error of the registry; `kind` says which, the message says why in words. */
export class DirectoryError extends Error {
  readonly kind: DirectoryErrorKind;
  /** For `banned`: when the ban ends. */
  readonly bannedUntil: Date | undefined;

  constructor(kind: DirectoryErrorKind, message: string, options: { bannedUntil?: Date } = {}) {
    super(message);
    this.name = "DirectoryError";
    this.kind = kind;
    this.bannedUntil = options.bannedUntil;
  }
}

/**
 * Internal: a concurrent first insert of the same key won, so the transaction runs again (the
 * directory retries it; it never reaches a handler).
 */
export class RaceLostError extends Error {
  constructor() {
    super("a concurrent insert of the same key won; retry");
    this.name = "RaceLostError";
  }
}
