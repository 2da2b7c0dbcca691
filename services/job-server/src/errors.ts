/**
 * What went wrong in the job server's domain, independent of any transport. The handlers map
 * each kind to one Connect code in `toConnectError` (./connect-errors.ts):
 *
 * | kind                  | code                | meaning                                                  |
 * |-----------------------|---------------------|----------------------------------------------------------|
 * | `invalid_argument`    | INVALID_ARGUMENT    | a bad field, named in the message ("spec.dataset.digest: …") |
 * | `not_found`           | NOT_FOUND           | unknown job or node                                      |
 * | `already_exists`      | ALREADY_EXISTS      | a job id reused with a different spec                    |
 * | `failed_precondition` | FAILED_PRECONDITION | wrong state, stale lease, unusable escrow                |
 * | `permission_denied`   | PERMISSION_DENIED   | another client's job, a node speaking for another        |
 * | `unauthenticated`     | UNAUTHENTICATED     | a completion whose signature does not verify             |
 * | `resource_exhausted`  | RESOURCE_EXHAUSTED  | over the per-client queue limit                          |
 * | `unavailable`         | UNAVAILABLE         | a peer (wallet, registry) cannot be reached              |
 * | `unimplemented`       | UNIMPLEMENTED       | a feature this job server does not offer (federation)    |
 */
export type JobServerErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "permission_denied"
  | "unauthenticated"
  | "resource_exhausted"
  | "unavailable"
  | "unimplemented";

/** A domain error: `kind` says which, the message says why in words (never payloads or keys). */
export class JobServerError extends Error {
  override readonly name = "JobServerError";
  readonly kind: JobServerErrorKind;

  constructor(kind: JobServerErrorKind, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
  }
}

/** INVALID_ARGUMENT naming `field`: "<field>: <problem>". */
export function invalidArgument(field: string, problem: string): JobServerError {
  return new JobServerError("invalid_argument", `${field}: ${problem}`);
}

/** FAILED_PRECONDITION with `message`. */
export function failedPrecondition(message: string): JobServerError {
  return new JobServerError("failed_precondition", message);
}
