/**
 * What went wrong in a gossip exchange, independent of any transport; the metagraph service maps
 * each kind to the Connect code of the same name.
 */
export type GossipErrorKind =
  | "invalid_argument"
  | "failed_precondition"
  | "permission_denied"
  | "resource_exhausted";

/** A refused gossip exchange; the message says why (never record contents). */
export class GossipError extends Error {
  readonly kind: GossipErrorKind;
  constructor(kind: GossipErrorKind, message: string) {
    super(message);
    this.name = "GossipError";
    this.kind = kind;
  }
}
