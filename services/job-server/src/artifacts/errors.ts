/**
 * What went wrong in the artifact store, independent of any transport. The artifact service maps
 * each kind to the Connect code of the same name in its `toConnectError`:
 *
 * | kind                  | meaning                                                               |
 * |-----------------------|-----------------------------------------------------------------------|
 * | `invalid_argument`    | a bad field, a chunk whose checksum or size is wrong, an oversized chunk |
 * | `not_found`           | unknown or expired upload, unknown artifact                           |
 * | `already_exists`      | an upload id reused with other metadata                               |
 * | `failed_precondition` | chunk not at the committed offset, digest mismatch, upload incomplete or already committed |
 * | `permission_denied`   | the caller may not read the artifact                                  |
 * | `resource_exhausted`  | an artifact above the size limit                                      |
 * | `data_loss`           | a committed artifact's bytes are missing from disk                    |
 */
export type ArtifactErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "permission_denied"
  | "resource_exhausted"
  | "data_loss";

/** An artifact store error: `kind` says which, the message says why in words. */
export class ArtifactError extends Error {
  override readonly name = "ArtifactError";
  readonly kind: ArtifactErrorKind;

  constructor(kind: ArtifactErrorKind, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
  }
}

/** INVALID_ARGUMENT naming `field`. */
export function invalidArgument(field: string, problem: string): ArtifactError {
  return new ArtifactError("invalid_argument", `${field}: ${problem}`);
}
