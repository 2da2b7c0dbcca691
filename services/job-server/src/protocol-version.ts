/**
 * The protocol version this job server speaks and the major-version rule every request meets.
 */
import { create } from "@bufbuild/protobuf";
import {
  type ProtocolVersion,
  ProtocolVersionSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { JobServerError } from "./errors.js";

/** The protocol version of this build, stamped on every record the job server produces. */
export const PROTOCOL_VERSION: ProtocolVersion = create(ProtocolVersionSchema, {
  major: 1,
  minor: 0,
  patch: 0,
});

/** "1.0.0" */
export function formatProtocolVersion(version: ProtocolVersion): string {
  return `${version.major}.${version.minor}.${version.patch}`;
}

/**
 * Checks that a caller speaks this server's major protocol version.
 * @throws JobServerError invalid_argument when `version` is absent, failed_precondition naming
 * both versions when the major versions differ.
 */
export function checkProtocolVersion(version: ProtocolVersion | undefined, method: string): void {
  if (version === undefined) {
    throw new JobServerError("invalid_argument", `${method}: protocol_version is required`);
  }
  if (version.major !== PROTOCOL_VERSION.major) {
    throw new JobServerError(
      "failed_precondition",
      `${method}: protocol version ${formatProtocolVersion(version)} is not compatible with this job server's ${formatProtocolVersion(PROTOCOL_VERSION)} (major versions differ)`,
    );
  }
}
