/**
 * Opaque page tokens for the registry's paged lists. A token carries the filters it was issued
 * for and the last key of its page, so the next page starts after that key; a token used with
 * other filters is refused (the contract's INVALID_ARGUMENT), a token that does not decode too.
 */
import { DirectoryError } from "./errors.js";

interface PageTokenBody {
  /** The filters, serialised. */
  readonly f: string;
  /** The last key of the previous page. */
  readonly k: string;
}

/** A token for the page after `lastKey`, under `filters` (any JSON-serialisable value). */
export function encodePageToken(filters: unknown, lastKey: string): string {
  const body: PageTokenBody = { f: JSON.stringify(filters), k: lastKey };
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
}

/**
 * The key to start after, or undefined for the first page (empty token).
 * @throws DirectoryError("invalid") when the token does not decode or was issued for other filters.
 */
export function decodePageToken(token: string, filters: unknown): string | undefined {
  if (token === "") return undefined;
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw new DirectoryError("invalid", "page_token is not a token this registry issued");
  }
  if (
    typeof body !== "object" ||
    body === null ||
    typeof (body as PageTokenBody).f !== "string" ||
    typeof (body as PageTokenBody).k !== "string"
  ) {
    throw new DirectoryError("invalid", "page_token is not a token this registry issued");
  }
  if ((body as PageTokenBody).f !== JSON.stringify(filters)) {
    throw new DirectoryError("invalid", "page_token was issued for other filters");
  }
  return (body as PageTokenBody).k;
}

/** Page size from a request: 0 means `defaultSize`, larger than `maxSize` is lowered to it. */
export function pageSizeOf(requested: number, defaultSize: number, maxSize: number): number {
  if (requested <= 0) return defaultSize;
  return Math.min(requested, maxSize);
}
