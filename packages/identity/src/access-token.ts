/**
 * Short-lived direct-access tokens: a gateway or job server lets one client call one compute
 * node's TensorService for one model and one job or task (CyxWiz NodeAssignment.auth_token,
 * Bittensor's direct Forward/Backward), and the node checks the grant offline with the issuer's
 * public key, which its address encodes. The token is `base64url(AccessGrant) "." base64url(sig)`;
 * the ed25519 signature covers a domain line and the grant's binary encoding (common.proto
 * AccessGrant), so a grant is never confused with another signed message. The token does not
 * replace the signed request: the client still signs every call, and the grant names that client.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type AccessGrant, AccessGrantSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { isAddress, publicKeyFromAddress } from "./address.js";
import { type KeyPair, verify } from "./keys.js";

/** What a token lets its holder do. */
export interface AccessTokenClaims {
  /** The node the client may call. */
  readonly nodeAddress: string;
  /** The client: the signed caller of every call made with the token. */
  readonly clientAddress: string;
  /** The model the client may run on the node. */
  readonly modelId: string;
  /** The job or inference task the grant belongs to. */
  readonly jobId: string;
}

/** A token that failed its check, with the Connect code a server answers. */
export class AccessTokenError extends Error {
  override readonly name = "AccessTokenError";
  constructor(
    readonly code: "unauthenticated" | "permission_denied",
    message: string,
  ) {
    super(message);
  }
}

const DOMAIN = new TextEncoder().encode("tessera-access-grant/v1\n");
/** Longest token accepted before decoding (a grant is a few hundred bytes). */
const MAX_TOKEN_CHARS = 4096;

function signingBytes(grantBytes: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(DOMAIN.length + grantBytes.length);
  bytes.set(DOMAIN, 0);
  bytes.set(grantBytes, DOMAIN.length);
  return bytes;
}

/** Issues a token for `claims`, signed by `issuer`, valid for `ttlMs` from `now`. */
export function issueAccessToken(
  issuer: KeyPair,
  claims: AccessTokenClaims,
  options: { readonly ttlMs: number; readonly now?: Date },
): { token: string; grant: AccessGrant; expiresAt: Date } {
  if (!Number.isSafeInteger(options.ttlMs) || options.ttlMs <= 0) {
    throw new RangeError(`ttlMs must be a positive integer, got ${options.ttlMs}`);
  }
  const now = options.now ?? new Date();
  const expiresAt = new Date(now.getTime() + options.ttlMs);
  const grant = create(AccessGrantSchema, {
    issuerAddress: issuer.address,
    nodeAddress: claims.nodeAddress,
    clientAddress: claims.clientAddress,
    modelId: claims.modelId,
    jobId: claims.jobId,
    issuedAt: timestampFromDate(now),
    expiresAt: timestampFromDate(expiresAt),
  });
  const grantBytes = toBinary(AccessGrantSchema, grant);
  const signature = issuer.sign(signingBytes(grantBytes));
  const token = `${Buffer.from(grantBytes).toString("base64url")}.${Buffer.from(signature).toString("base64url")}`;
  return { token, grant, expiresAt };
}

/** The signed grant inside a token, without checking anything; undefined when malformed. */
function decodeToken(
  token: string,
): { grant: AccessGrant; grantBytes: Uint8Array; signature: Uint8Array } | undefined {
  if (token.length > MAX_TOKEN_CHARS) return undefined;
  const parts = token.split(".");
  if (parts.length !== 2) return undefined;
  const [grantPart = "", signaturePart = ""] = parts;
  const base64url = /^[A-Za-z0-9_-]+$/;
  if (!base64url.test(grantPart) || !base64url.test(signaturePart)) return undefined;
  const grantBytes = new Uint8Array(Buffer.from(grantPart, "base64url"));
  const signature = new Uint8Array(Buffer.from(signaturePart, "base64url"));
  try {
    return { grant: fromBinary(AccessGrantSchema, grantBytes), grantBytes, signature };
  } catch {
    return undefined;
  }
}

/**
 * Checks `token` against what the call claims and returns its grant. A missing, malformed,
 * forged, untrusted or expired token is `unauthenticated`; a valid token for another node, model,
 * client or job is `permission_denied`.
 * @throws AccessTokenError
 */
export function verifyAccessToken(
  token: string,
  expect: AccessTokenClaims & { readonly trustedIssuers: readonly string[]; readonly now?: Date },
): AccessGrant {
  if (token === "") throw new AccessTokenError("unauthenticated", "access_token is missing");
  const decoded = decodeToken(token);
  if (decoded === undefined) {
    throw new AccessTokenError("unauthenticated", "access_token is malformed");
  }
  const { grant, grantBytes, signature } = decoded;
  if (!isAddress(grant.issuerAddress) || !expect.trustedIssuers.includes(grant.issuerAddress)) {
    throw new AccessTokenError(
      "unauthenticated",
      `access_token was issued by ${grant.issuerAddress || "nobody"}, not an issuer this node trusts`,
    );
  }
  if (!verify(publicKeyFromAddress(grant.issuerAddress), signingBytes(grantBytes), signature)) {
    throw new AccessTokenError("unauthenticated", "access_token signature does not verify");
  }
  const now = expect.now ?? new Date();
  if (grant.expiresAt === undefined || timestampDate(grant.expiresAt) <= now) {
    throw new AccessTokenError("unauthenticated", "access_token has expired");
  }
  const mismatches: [string, string, string][] = [
    ["node", grant.nodeAddress, expect.nodeAddress],
    ["client", grant.clientAddress, expect.clientAddress],
    ["model", grant.modelId, expect.modelId],
    ["job", grant.jobId, expect.jobId],
  ];
  for (const [what, granted, asked] of mismatches) {
    if (granted !== asked) {
      throw new AccessTokenError(
        "permission_denied",
        `access_token is for ${what} ${JSON.stringify(granted)}, not ${JSON.stringify(asked)}`,
      );
    }
  }
  return grant;
}
