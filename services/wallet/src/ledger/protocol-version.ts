import type { ProtocolVersion } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { WalletError } from "./errors.js";
import { WALLET_PROTOCOL_VERSION } from "./records.js";

/** "1.0.0" */
export function formatProtocolVersion(version: {
  major: number;
  minor: number;
  patch: number;
}): string {
  return `${version.major}.${version.minor}.${version.patch}`;
}

/**
 * Checks that a caller speaks the wallet's major protocol version.
 * @throws WalletError invalid_argument when `version` is absent, failed_precondition naming both
 * versions when its major version differs from {@link WALLET_PROTOCOL_VERSION}'s.
 */
export function checkProtocolVersion(version: ProtocolVersion | undefined, method: string): void {
  if (version === undefined) {
    throw new WalletError("invalid_argument", `${method}: protocol_version is required`);
  }
  if (version.major !== WALLET_PROTOCOL_VERSION.major) {
    throw new WalletError(
      "failed_precondition",
      `${method}: protocol version ${formatProtocolVersion(version)} is not compatible with this wallet's ${formatProtocolVersion(WALLET_PROTOCOL_VERSION)} (major versions differ)`,
    );
  }
}
