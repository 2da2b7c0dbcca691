import { create } from "@bufbuild/protobuf";
import {
  type ProtocolVersion,
  ProtocolVersionSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { ArtifactError } from "./errors.js";

/** The Tessera protocol version the artifact service speaks and stamps on its artifacts: 1.0.0. */
export const ARTIFACT_PROTOCOL_VERSION: ProtocolVersion = create(ProtocolVersionSchema, {
  major: 1,
  minor: 0,
  patch: 0,
});

function format(version: { major: number; minor: number; patch: number }): string {
  return `${version.major}.${version.minor}.${version.patch}`;
}

/**
 * Checks that a caller speaks the artifact service's major protocol version.
 * @throws ArtifactError invalid_argument when `version` is absent, failed_precondition naming both
 * versions when the major versions differ.
 */
export function checkProtocolVersion(version: ProtocolVersion | undefined, method: string): void {
  if (version === undefined) {
    throw new ArtifactError("invalid_argument", `${method}: protocol_version is required`);
  }
  if (version.major !== ARTIFACT_PROTOCOL_VERSION.major) {
    throw new ArtifactError(
      "failed_precondition",
      `${method}: protocol version ${format(version)} is not compatible with this server's ${format(ARTIFACT_PROTOCOL_VERSION)} (major versions differ)`,
    );
  }
}
