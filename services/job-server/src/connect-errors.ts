/**
 * The one mapping of the job server's errors to Connect codes for its handlers: a
 * {@link JobServerError} to its kind's code with its message, a ConnectError unchanged, a
 * transaction that kept losing to concurrent ones `unavailable` (nothing was written; retrying
 * is safe), anything else `internal` with a generic message and the original as `cause` (the
 * runtime logs it; the client never sees it).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { StoreConflictError } from "@tessera/store";
import { JobServerError, type JobServerErrorKind } from "./errors.js";

const CODE_OF: Readonly<Record<JobServerErrorKind, Code>> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  permission_denied: Code.PermissionDenied,
  unauthenticated: Code.Unauthenticated,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  unimplemented: Code.Unimplemented,
};

/** See the module comment. */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof JobServerError) return new ConnectError(error.message, CODE_OF[error.kind]);
  if (error instanceof StoreConflictError) {
    return new ConnectError(
      "the job queue is busy; nothing was written, retry the call",
      Code.Unavailable,
      undefined,
      undefined,
      error,
    );
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/** Runs a unary handler body, mapping whatever it throws. */
export async function translate<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw toConnectError(error);
  }
}

/** Runs a streaming handler body, mapping whatever it throws. */
export async function* translateStream<T>(body: () => AsyncGenerator<T>): AsyncGenerator<T> {
  try {
    yield* body();
  } catch (error) {
    throw toConnectError(error);
  }
}

/** PERMISSION_DENIED unless the node speaking is the signed caller. */
export function requireSelf(caller: string, nodeAddress: string): void {
  if (nodeAddress !== caller) {
    throw new JobServerError(
      "permission_denied",
      "node_address must be the signed caller: a node speaks only for itself",
    );
  }
}
