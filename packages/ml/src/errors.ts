/**
 * Errors of the job executors. A job's own bad input (unreadable dataset, invalid model document,
 * bytes that do not match their digest) is a {@link JobInputError}: the node reports the job as
 * failed with JOB_FAILURE_REASON_INVALID_INPUT and the message, which names the field, column or
 * row and never quotes more than one offending cell.
 */

/** The job's input is unusable; the message says which field, column or row and why. */
export class JobInputError extends Error {
  override readonly name = "JobInputError";
}

/**
 * Content could not be fetched (network failure, HTTP error, no fetcher for the URI scheme).
 * Unlike {@link JobInputError} it may succeed when retried.
 */
export class ContentUnavailableError extends Error {
  override readonly name = "ContentUnavailableError";
}
