/**
 * Opaque page tokens of ListJobs: the filters the token was issued for and the key of the last
 * job on its page (creation time and id), so the next page starts after it. A token used with
 * other filters, or one that does not decode, is refused with invalid_argument.
 */
import { invalidArgument } from "../errors.js";

/** The key of one job in ListJobs order (newest first). */
export interface JobPageKey {
  readonly createdAtMs: number;
  readonly jobId: string;
}

interface TokenBody {
  readonly f: string;
  readonly t: number;
  readonly j: string;
}

/** A token for the page after `last`, under `filters` (any JSON-serialisable value). */
export function encodePageToken(filters: unknown, last: JobPageKey): string {
  const body: TokenBody = { f: JSON.stringify(filters), t: last.createdAtMs, j: last.jobId };
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
}

/**
 * The key to start after, or undefined for the first page (empty token).
 * @throws JobServerError invalid_argument when the token does not decode or was issued for other
 * filters.
 */
export function decodePageToken(token: string, filters: unknown): JobPageKey | undefined {
  if (token === "") return undefined;
  let body: Partial<TokenBody>;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Partial<TokenBody>;
  } catch {
    throw invalidArgument("page_token", "is not a token this job server issued");
  }
  if (
    typeof body !== "object" ||
    body === null ||
    typeof body.f !== "string" ||
    typeof body.t !== "number" ||
    typeof body.j !== "string"
  ) {
    throw invalidArgument("page_token", "is not a token this job server issued");
  }
  if (body.f !== JSON.stringify(filters)) {
    throw invalidArgument("page_token", "was issued for other filters");
  }
  return { createdAtMs: body.t, jobId: body.j };
}
