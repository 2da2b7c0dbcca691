/**
 * Field rules of ArtifactService requests (see artifact_service.proto), as pure checks that throw
 * {@link ArtifactError} invalid_argument naming the field.
 */
import { invalidArgument } from "./errors.js";

const UPLOAD_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
// RFC 6838 type/subtype (restricted-name characters), optional parameters after ";".
const MEDIA_TYPE =
  /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(\s*;.*)?$/;
const MAX_NAME_BYTES = 256;
const MAX_MEDIA_TYPE_LENGTH = 255;
/** Ids of jobs and leases: printable ASCII without spaces, as other services mint them. */
const REFERENCE_ID = /^[\x21-\x7e]{1,128}$/;

/** Checks `upload_id`: 1-128 characters of [A-Za-z0-9._:-]. */
export function checkUploadId(uploadId: string, field = "upload_id"): void {
  if (!UPLOAD_ID.test(uploadId)) {
    throw invalidArgument(field, "must be 1-128 characters of [A-Za-z0-9._:-]");
  }
}

/** Checks an artifact name: 1-256 bytes of UTF-8 without "/" or control characters. */
export function checkName(name: string): void {
  const bytes = Buffer.byteLength(name, "utf8");
  if (bytes === 0 || bytes > MAX_NAME_BYTES) {
    throw invalidArgument("name", `must be 1-${MAX_NAME_BYTES} bytes of UTF-8, got ${bytes}`);
  }
  if (name.includes("/")) throw invalidArgument("name", 'must not contain "/"');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we reject
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    throw invalidArgument("name", "must not contain control characters");
  }
}

/** Checks an IANA media type such as "text/csv" or "application/onnx". */
export function checkMediaType(mediaType: string): void {
  if (mediaType.length > MAX_MEDIA_TYPE_LENGTH || !MEDIA_TYPE.test(mediaType)) {
    throw invalidArgument("media_type", 'must be a media type such as "text/csv"');
  }
}

/** Checks a digest: "sha256:<64 lowercase hex>". */
export function checkDigest(digest: string, field = "digest"): void {
  if (!DIGEST.test(digest)) {
    throw invalidArgument(field, 'must be "sha256:" followed by 64 lowercase hex digits');
  }
}

/** Checks an optional job or lease id ("" means none). */
export function checkReferenceId(id: string, field: string): void {
  if (id !== "" && !REFERENCE_ID.test(id)) {
    throw invalidArgument(field, "must be 1-128 printable ASCII characters without spaces");
  }
}

/**
 * A uint64 from the wire as a number of bytes.
 * @throws ArtifactError invalid_argument when it exceeds 2^53 - 1 (no real file is that large).
 */
export function byteCount(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw invalidArgument(field, `${value} is larger than any supported size`);
  }
  return Number(value);
}
