/**
 * How the wallet commands print answers: `name: value` lines or a table for people, or with
 * --json the response message as protobuf JSON (every field, including zero values). Amounts are
 * printed exactly as the wallet sent them: decimal strings of base units.
 */
import { type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import type { PaymentTree } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type Escrow,
  EscrowState,
  type TransactionRecord,
} from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import type {
  GetBalanceResponse,
  GetTransactionHistoryResponse,
} from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { kindName } from "./wallet-options.js";

/** `message` as indented protobuf JSON (toJson with every implicit field), ending in a newline. */
export function formatJson<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): string {
  return `${JSON.stringify(toJson(schema, message, { alwaysEmitImplicit: true }), null, 2)}\n`;
}

/** A balance: address, available, held, staked and total, one `name: value` line each. */
export function formatBalance(balance: GetBalanceResponse): string {
  return lines([
    ["address", balance.address],
    ["available", balance.available],
    ["held", balance.held],
    ["staked", balance.staked],
    ["total", balance.total],
  ]);
}

/** A committed transfer: its id first (the one to retry with), then what moved where and when. */
export function formatTransfer(transaction: TransactionRecord): string {
  return lines([
    ["transfer id", transaction.transactionId],
    ["from", transaction.debitAccount],
    ["to", transaction.creditAccount],
    ["amount", transaction.amount],
    ...optional("reference", transaction.referenceId),
    ...optional("memo", transaction.memo),
    ["time", formatTime(transaction.createdAt)],
  ]);
}

/**
 * One page of history as a table, seen from `address`: TIME, KIND, COUNTERPARTY (the other
 * account), AMOUNT ("+" when it came in, "-" when it went out) and ID; then
 * `next page token: <token>` when there is a next page. An empty page prints the header only.
 */
export function formatHistory(address: string, page: GetTransactionHistoryResponse): string {
  const rows = page.transactions.map((entry) => {
    const outgoing = entry.debitAccount === address;
    const incoming = entry.creditAccount === address;
    const counterparty = outgoing ? entry.creditAccount : entry.debitAccount;
    const sign = outgoing && !incoming ? "-" : incoming && !outgoing ? "+" : "";
    return [
      formatTime(entry.createdAt),
      kindName(entry.kind),
      counterparty,
      `${sign}${entry.amount}`,
      entry.transactionId,
    ];
  });
  let text = table(["TIME", "KIND", "COUNTERPARTY", "AMOUNT", "ID"], rows, [3]);
  if (page.nextPageToken !== "") text += `next page token: ${page.nextPageToken}\n`;
  return text;
}

/** An escrow's fields, one `name: value` line each, its payment tree (when set) indented below. */
export function formatEscrow(escrow: Escrow): string {
  let text = lines([
    ["escrow id", escrow.escrowId],
    ["state", escrowStateName(escrow.state)],
    ["job id", escrow.jobId],
    ["payer", escrow.payerAddress],
    ["arbiter", escrow.arbiterAddress],
    ["amount", escrow.amount],
    ["released", escrow.releasedAmount],
    ["refunded", escrow.refundedAmount],
    ["created at", formatTime(escrow.createdAt)],
    ["expires at", formatTime(escrow.expiresAt)],
    ...(escrow.settledAt ? [["settled at", formatTime(escrow.settledAt)] as const] : []),
  ]);
  text += escrow.paymentTree ? formatPaymentTree(escrow.paymentTree) : "payment tree: none\n";
  return text;
}

function formatPaymentTree(tree: PaymentTree): string {
  const validators = tree.validatorAddresses.length > 0 ? tree.validatorAddresses.join(", ") : "-";
  return (
    "payment tree:\n" +
    table(
      [],
      [
        ["  compute", tree.computeAmount || "0", tree.computeAddress || "-"],
        ["  gateway", tree.gatewayAmount || "0", tree.gatewayAddress || "-"],
        ["  validators", tree.validatorAmount || "0", validators],
        ["  treasury", tree.treasuryAmount || "0", tree.treasuryAddress || "-"],
      ],
      [1],
    )
  );
}

/** "held", "released", "refunded", or "unspecified"/"unknown(<n>)". */
export function escrowStateName(state: EscrowState): string {
  const name = EscrowState[state];
  return name === undefined ? `unknown(${state})` : name.toLowerCase();
}

/** ISO 8601 in UTC with milliseconds, or "-" when absent. */
export function formatTime(timestamp: Timestamp | undefined): string {
  return timestamp ? timestampDate(timestamp).toISOString() : "-";
}

/** `name: value` lines, an empty value printed as "-". */
export function lines(fields: ReadonlyArray<readonly [string, string]>): string {
  return fields.map(([name, value]) => `${name}: ${value === "" ? "-" : value}\n`).join("");
}

function optional(name: string, value: string): Array<readonly [string, string]> {
  return value === "" ? [] : [[name, value]];
}

/** Columns separated by two spaces; `rightAligned` columns are padded on the left (numbers). */
export function table(
  header: readonly string[],
  rows: ReadonlyArray<readonly string[]>,
  rightAligned: readonly number[] = [],
): string {
  const all = header.length > 0 ? [header, ...rows] : rows;
  const columns = Math.max(0, ...all.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, i) =>
    Math.max(...all.map((row) => (row[i] ?? "").length)),
  );
  return all
    .map((row) =>
      row
        .map((cell, i) => {
          const width = widths[i] ?? 0;
          if (i === row.length - 1 && !rightAligned.includes(i)) return cell;
          return rightAligned.includes(i) ? cell.padStart(width) : cell.padEnd(width);
        })
        .join("  ")
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join("");
}
