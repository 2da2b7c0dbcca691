import type { ProtocolVersion } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { DirectoryError } from "./errors.js";

/** The Tessera protocol version this registry speaks (major.minor.patch). */
export const REGISTRY_PROTOCOL_VERSION: Readonly<{ major: number; minor: number; patch: number }> =
  Object.freeze({ major: 1, minor: 0, patch: 0 });

/** "1.0.0" */
export function formatProtocolVersion(version: {
  major: number;
  minor: number;
  patch: number;
}): string {
  return `${version.major}.${version.minor}.${version.patch}`;
}

/**
 * Checks that a peer speaks our major version.
 * @throws DirectoryError("invalid") when `version` is absent, ("failed_precondition") naming
 * both versions when its major version differs from {@link REGISTRY_PROTOCOL_VERSION}'s.
 */
export function checkProtocolVersion(version: ProtocolVersion | undefined, what: string): void {
  if (version === undefined) {
    throw new DirectoryError("invalid", `${what}: protocol_version is required`);
  }
  if (version.major !== REGISTRY_PROTOCOL_VERSION.major) {
    throw new DirectoryError(
      "failed_precondition",
      `${what}: protocol version ${formatProtocolVersion(version)} is not compatible with this registry's ${formatProtocolVersion(REGISTRY_PROTOCOL_VERSION)} (major versions differ)`,
    );
  }
}
