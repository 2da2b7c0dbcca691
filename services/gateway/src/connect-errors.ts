/**
 * The one mapping of the gateway's errors to Connect codes: a {@link GatewayError} to its kind's
 * code with its message, a ConnectError unchanged, anything else `internal` with a generic
 * message and the original as `cause` (the runtime logs it; the client never sees it).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { GatewayError, type GatewayErrorKind } from "./errors.js";

const CODE_OF: Readonly<Record<GatewayErrorKind, Code>> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  permission_denied: Code.PermissionDenied,
  unauthenticated: Code.Unauthenticated,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
};

/** See the module comment. */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof GatewayError) return new ConnectError(error.message, CODE_OF[error.kind]);
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/** Runs a handler body, mapping whatever it throws with {@link toConnectError}. */
export async function translate<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw toConnectError(error);
  }
}
