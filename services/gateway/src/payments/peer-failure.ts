/**
 * How a failed call to the wallet or registry reaches the client: unreachable peers are
 * UNAVAILABLE (retry later); a refusal keeps its meaning where the client can act on it.
 */
import { PeerError } from "@tessera/sdk/peer-error";
import { GatewayError, type GatewayErrorKind } from "../errors.js";

const PASSED_ON = new Set<string>([
  "invalid_argument",
  "not_found",
  "failed_precondition",
  "resource_exhausted",
]);

/** `error` as a GatewayError; anything but a PeerError is returned unchanged. */
export function fromPeerError(error: unknown): unknown {
  if (!(error instanceof PeerError)) return error;
  if (error.kind === "unreachable") {
    return new GatewayError("unavailable", `${error.message} (unreachable)`, { cause: error });
  }
  const kind = (PASSED_ON.has(error.code) ? error.code : "unavailable") as GatewayErrorKind;
  return new GatewayError(kind, error.message, { cause: error });
}

/**
 * Whether `error` is worth retrying: the peer did not answer, or answered UNAVAILABLE (e.g. too
 * few validators reachable right now), both of which PeerError files as "unreachable".
 */
export function isUnreachable(error: unknown): boolean {
  return error instanceof PeerError && error.kind === "unreachable";
}
