/**
 * What went wrong while validating work, independent of any transport. The service handlers map
 * each kind to one Connect code (see `toConnectError` in ../validation-service.ts):
 *
 * | kind                  | code                | meaning                                            |
 * |-----------------------|---------------------|----------------------------------------------------|
 * | `invalid_argument`    | INVALID_ARGUMENT    | malformed request (missing field, bad address)      |
 * | `not_found`           | NOT_FOUND           | unknown node, model or subnet                       |
 * | `already_exists`      | ALREADY_EXISTS      | same request id with a different body               |
 * | `failed_precondition` | FAILED_PRECONDITION | a check disagrees (price, route, expiry, version)   |
 * | `unauthenticated`     | UNAUTHENTICATED     | a node's completion signature does not verify       |
 * | `permission_denied`   | PERMISSION_DENIED   | the caller may not ask for this                     |
 * | `unavailable`         | UNAVAILABLE         | no qualifying node, or fewer than M validators      |
 * | `deadline_exceeded`   | DEADLINE_EXCEEDED   | the caller's deadline passed before quorum          |
 * | `resource_exhausted`  | RESOURCE_EXHAUSTED  | over a limit                                        |
 */
export type ValidationErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "unauthenticated"
  | "permission_denied"
  | "unavailable"
  | "deadline_exceeded"
  | "resource_exhausted";

/** A validation failure; `kind` says which, the message says why in words (never payloads). */
export class ValidationError extends Error {
  readonly kind: ValidationErrorKind;

  constructor(kind: ValidationErrorKind, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ValidationError";
    this.kind = kind;
  }
}
