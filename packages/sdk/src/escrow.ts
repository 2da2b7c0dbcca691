/**
 * The escrow that pays for one job: created in the wallet by the payer before the job is
 * submitted, with the job server as arbiter, and found again (not created twice) when the same
 * submission runs again.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { sha256, toHex } from "@tessera/identity/hash";
import { type Escrow, EscrowState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import type { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { SDK_PROTOCOL_VERSION } from "./protocol-version.js";
import { callOptions } from "./service-client.js";

/**
 * The escrow id the SDK uses for `jobId` paid by `payerAddress`: `job-escrow.` and 40 hex
 * digits of SHA-256("<payer>\n<job id>"). Escrow ids are global in the wallet while job ids are
 * per client, so the payer is part of it; being derived, a re-run finds the escrow it made.
 */
export function escrowIdFor(payerAddress: string, jobId: string): string {
  const digest = sha256(new TextEncoder().encode(`${payerAddress}\n${jobId}`));
  return `job-escrow.${toHex(digest).slice(0, 40)}`;
}

/** What the job's escrow must be. */
export interface JobEscrowTerms {
  readonly escrowId: string;
  readonly jobId: string;
  /** The paying address: the key the wallet client signs with. */
  readonly payerAddress: string;
  /** Base units, greater than zero. */
  readonly amount: bigint;
  /** The job server's address: the only one who may release the money (or refund it early). */
  readonly arbiterAddress: string;
  /** How long from now the escrow holds the money before the payer may take it back. */
  readonly expiresInMs: number;
}

/** An escrow that exists with other terms than the ones asked for. */
export class EscrowConflictError extends Error {
  constructor(
    readonly escrow: Escrow,
    readonly mismatches: readonly string[],
  ) {
    super(
      `escrow ${escrow.escrowId} already exists with another ${mismatches.join(", ")}; use another job id or payment.escrow_id`,
    );
    this.name = "EscrowConflictError";
  }
}

/** Options of {@link ensureJobEscrow}. */
export interface EnsureEscrowOptions {
  readonly signal?: AbortSignal | undefined;
  /** The clock for the expiry; default the system clock. */
  readonly now?: (() => Date) | undefined;
}

/**
 * The job's escrow: the existing one when `terms.escrowId` already names an escrow with these
 * terms (in any state: a finished job's escrow is released or refunded), else a new one made by
 * CreateEscrow (signed by the payer, who must be `wallet`'s key), HELD until
 * now + `expiresInMs`.
 * @throws EscrowConflictError when the id names an escrow with another job, payer, amount or
 * arbiter; the wallet's ConnectError otherwise (failed_precondition: not enough available
 * balance; permission_denied: an escrow of someone else).
 */
export async function ensureJobEscrow(
  wallet: Client<typeof WalletService>,
  terms: JobEscrowTerms,
  options: EnsureEscrowOptions = {},
): Promise<{ escrow: Escrow; created: boolean }> {
  const existing = await findEscrow(wallet, terms.escrowId, options.signal);
  if (existing !== undefined) return { escrow: checkTerms(existing, terms), created: false };
  const now = options.now?.() ?? new Date();
  try {
    const response = await wallet.createEscrow(
      {
        protocolVersion: SDK_PROTOCOL_VERSION,
        escrowId: terms.escrowId,
        jobId: terms.jobId,
        payerAddress: terms.payerAddress,
        amount: terms.amount.toString(),
        arbiterAddress: terms.arbiterAddress,
        expiresAt: timestampFromDate(new Date(now.getTime() + terms.expiresInMs)),
      },
      callOptions(options.signal),
    );
    if (response.escrow === undefined) {
      throw new Error(`the wallet answered CreateEscrow without the escrow ${terms.escrowId}`);
    }
    return { escrow: response.escrow, created: true };
  } catch (error) {
    // Another run made it between our read and our create: use it if it is ours.
    if (!(error instanceof ConnectError) || error.code !== Code.AlreadyExists) throw error;
    const raced = await findEscrow(wallet, terms.escrowId, options.signal);
    if (raced === undefined) throw error;
    return { escrow: checkTerms(raced, terms), created: false };
  }
}

/** True when an escrow still holds money for its job. */
export function isHeld(escrow: Escrow): boolean {
  return escrow.state === EscrowState.HELD;
}

async function findEscrow(
  wallet: Client<typeof WalletService>,
  escrowId: string,
  signal: AbortSignal | undefined,
): Promise<Escrow | undefined> {
  try {
    const response = await wallet.getEscrow(
      { protocolVersion: SDK_PROTOCOL_VERSION, escrowId },
      callOptions(signal),
    );
    return response.escrow;
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.NotFound) return undefined;
    throw error;
  }
}

function checkTerms(escrow: Escrow, terms: JobEscrowTerms): Escrow {
  const mismatches: string[] = [];
  if (escrow.jobId !== terms.jobId) mismatches.push(`job id (${escrow.jobId})`);
  if (escrow.payerAddress !== terms.payerAddress) mismatches.push(`payer (${escrow.payerAddress})`);
  if (escrow.amount !== terms.amount.toString()) mismatches.push(`amount (${escrow.amount})`);
  if (escrow.arbiterAddress !== terms.arbiterAddress) {
    mismatches.push(`arbiter (${escrow.arbiterAddress})`);
  }
  if (mismatches.length > 0) throw new EscrowConflictError(escrow, mismatches);
  return escrow;
}
