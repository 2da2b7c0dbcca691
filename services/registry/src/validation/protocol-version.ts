/**
 * The protocol version as validation and gossip use it: the registry's version (one source of
 * truth: ../directory/protocol-version.ts) as a proto message, and the major-version rule as a
 * problem string for the caller to wrap in its own error (FAILED_PRECONDITION naming both
 * versions).
 */
import { create } from "@bufbuild/protobuf";
import {
  type ProtocolVersion,
  ProtocolVersionSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { formatProtocolVersion, REGISTRY_PROTOCOL_VERSION } from "../directory/protocol-version.js";

/** The protocol version of this build, as stamped on terms, signatures and gossip. */
export const PROTOCOL_VERSION: ProtocolVersion = create(
  ProtocolVersionSchema,
  REGISTRY_PROTOCOL_VERSION,
);

/**
 * Why a peer's version cannot interoperate with ours, or undefined when it can. A missing
 * version is a problem too: every request and record carries one.
 */
export function protocolVersionProblem(
  version: ProtocolVersion | undefined,
  ours: ProtocolVersion = PROTOCOL_VERSION,
): string | undefined {
  if (version === undefined) return "protocol_version is missing";
  if (version.major !== ours.major) {
    return `protocol version ${formatProtocolVersion(version)} is not compatible with ${formatProtocolVersion(ours)} (major versions differ)`;
  }
  return undefined;
}
