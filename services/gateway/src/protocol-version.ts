/**
 * The protocol version this gateway speaks and the major-version rule every request meets.
 */
import { create } from "@bufbuild/protobuf";
import {
  type ProtocolVersion,
  ProtocolVersionSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { GatewayError } from "./errors.js";

/** The protocol version of this build, stamped on every record the gateway produces. */
export const PROTOCOL_VERSION: ProtocolVersion = create(ProtocolVersionSchema, {
  major: 1,
  minor: 0,
  patch: 0,
});

function text(version: ProtocolVersion): string {
  return `${version.major}.${version.minor}.${version.patch}`;
}

/**
 * Checks that a caller speaks this gateway's major protocol version.
 * @throws GatewayError invalid_argument when absent, failed_precondition when the majors differ.
 */
export function checkProtocolVersion(version: ProtocolVersion | undefined, method: string): void {
  if (version === undefined) {
    throw new GatewayError("invalid_argument", `${method}: protocol_version is required`);
  }
  if (version.major !== PROTOCOL_VERSION.major) {
    throw new GatewayError(
      "failed_precondition",
      `${method}: protocol version ${text(version)} is not compatible with this gateway's ${text(PROTOCOL_VERSION)} (major versions differ)`,
    );
  }
}
