/**
 * How a call to a peer (wallet, registry) failed, without Connect types: `unreachable` when the
 * peer did not answer (retry later), `refused` when it answered no (with its code and message).
 */
export class PeerError extends Error {
  override readonly name = "PeerError";
  /** Whether the peer answered. */
  readonly kind: "unreachable" | "refused";
  /** The peer's status code name in lower snake case, e.g. "failed_precondition". */
  readonly code: string;

  constructor(kind: "unreachable" | "refused", code: string, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.kind = kind;
    this.code = code;
  }
}
