/**
 * What went wrong in the gateway's domain, independent of any transport. The handlers map each
 * kind to the Connect code of the same name in `toConnectError` (./connect-errors.ts).
 */
export type GatewayErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "permission_denied"
  | "unauthenticated"
  | "resource_exhausted"
  | "unavailable";

/** A domain error: `kind` says which, the message says why in words (never payloads or keys). */
export class GatewayError extends Error {
  override readonly name = "GatewayError";
  readonly kind: GatewayErrorKind;

  constructor(kind: GatewayErrorKind, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
  }
}

/** INVALID_ARGUMENT naming `field`: "<field>: <problem>". */
export function invalidArgument(field: string, problem: string): GatewayError {
  return new GatewayError("invalid_argument", `${field}: ${problem}`);
}
