/**
 * Transaction history: an account's ledger entries, newest first (commit order), one page at a
 * time, filtered by kind, time range, counterparty and reference id.
 *
 * A page token is opaque to clients: base64url of the filters it was issued for and the `seq` of
 * the last entry of its page. The next page starts after that entry, so entries committed while a
 * client pages never shift or repeat the pages it has not read yet.
 */
import type { TransactionKind } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import type { Kysely } from "kysely";
import { invalidArgument } from "./errors.js";
import { checkText } from "./input.js";
import { type EntryRow, entryFromDb } from "./records.js";
import type { WalletTables } from "./tables.js";

/** Entries per page when the query asks for 0. */
export const DEFAULT_HISTORY_PAGE_SIZE = 100;
/** Most entries per page; larger requests are lowered to it. */
export const MAX_HISTORY_PAGE_SIZE = 1000;

/** What {@link readHistory} lists. */
export interface HistoryQuery {
  /** The account whose entries to list (debit or credit side). */
  readonly address: string;
  /** Only these kinds; empty or absent for all. TRANSACTION_KIND_UNSPECIFIED is ignored. */
  readonly kinds?: readonly TransactionKind[] | undefined;
  /** Only entries created at or after this time (Unix ms). */
  readonly startMs?: number | undefined;
  /** Only entries created before this time (Unix ms). */
  readonly endMs?: number | undefined;
  /** Only entries whose other side is this account; empty or absent for any. */
  readonly counterparty?: string | undefined;
  /** Only entries with this reference id; empty or absent for any. */
  readonly referenceId?: string | undefined;
  /** 1-1000; 0 or absent means 100; larger values are lowered to 1000. */
  readonly pageSize?: number | undefined;
  /** The previous page's `nextPageToken`; empty or absent for the first page. */
  readonly pageToken?: string | undefined;
}

/** One page of entries. */
export interface HistoryPage {
  /** Newest first. */
  readonly entries: readonly EntryRow[];
  /** Token for the next page; empty on the last page. */
  readonly nextPageToken: string;
}

/**
 * Reads one page of `query` from `db`.
 * @throws WalletError invalid_argument for a bad filter or a page token that does not decode or
 * was issued for other filters.
 */
export async function readHistory(
  db: Kysely<WalletTables>,
  query: HistoryQuery,
): Promise<HistoryPage> {
  const address = query.address;
  if (typeof address !== "string" || address === "" || address.length > 200) {
    throw invalidArgument("address", "an account is required (at most 200 characters)");
  }
  const kinds = [...new Set((query.kinds ?? []).filter((kind) => kind !== 0))].sort(
    (a, b) => a - b,
  );
  const counterparty = query.counterparty ?? "";
  if (counterparty.length > 200) throw invalidArgument("counterparty", "at most 200 characters");
  const referenceId = checkText("reference_id", query.referenceId ?? "");
  const { startMs, endMs } = query;
  if (startMs !== undefined && endMs !== undefined && endMs < startMs) {
    throw invalidArgument("end_time", "must not be before start_time");
  }
  const filters = [address, kinds, startMs ?? null, endMs ?? null, counterparty, referenceId];
  const afterSeq = decodeToken(query.pageToken ?? "", filters);
  const requested = query.pageSize ?? 0;
  const pageSize =
    requested <= 0
      ? DEFAULT_HISTORY_PAGE_SIZE
      : Math.min(Math.trunc(requested), MAX_HISTORY_PAGE_SIZE);

  let select = db
    .selectFrom("wallet_transaction")
    .selectAll()
    .where((eb) =>
      counterparty === ""
        ? eb.or([eb("debit_account", "=", address), eb("credit_account", "=", address)])
        : eb.or([
            eb.and([eb("debit_account", "=", address), eb("credit_account", "=", counterparty)]),
            eb.and([eb("credit_account", "=", address), eb("debit_account", "=", counterparty)]),
          ]),
    );
  if (kinds.length > 0) select = select.where("kind", "in", kinds);
  if (startMs !== undefined) select = select.where("created_at_ms", ">=", startMs);
  if (endMs !== undefined) select = select.where("created_at_ms", "<", endMs);
  if (referenceId !== "") select = select.where("reference_id", "=", referenceId);
  if (afterSeq !== undefined) select = select.where("seq", "<", afterSeq);
  const rows = await select
    .orderBy("seq", "desc")
    .limit(pageSize + 1)
    .execute();

  const page = rows.slice(0, pageSize);
  const last = page.at(-1);
  const nextPageToken =
    rows.length > pageSize && last !== undefined ? encodeToken(filters, Number(last.seq)) : "";
  return { entries: page.map(entryFromDb), nextPageToken };
}

function encodeToken(filters: unknown, lastSeq: number): string {
  return Buffer.from(JSON.stringify({ f: JSON.stringify(filters), s: lastSeq }), "utf8").toString(
    "base64url",
  );
}

function decodeToken(token: string, filters: unknown): number | undefined {
  if (token === "") return undefined;
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalidArgument("page_token", "is not a token this wallet issued");
  }
  const { f, s } = (body ?? {}) as { f?: unknown; s?: unknown };
  if (typeof f !== "string" || typeof s !== "number" || !Number.isSafeInteger(s)) {
    throw invalidArgument("page_token", "is not a token this wallet issued");
  }
  if (f !== JSON.stringify(filters)) {
    throw invalidArgument("page_token", "was issued for other filters");
  }
  return s;
}
