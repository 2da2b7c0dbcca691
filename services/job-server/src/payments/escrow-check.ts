/**
 * The escrow behind a paid job, checked with the wallet before the job is stored: it must exist,
 * be open (HELD), name this job server as arbiter, have been paid by the caller for this job id,
 * hold at least the job's payment and outlive the job. Every refusal is failed_precondition
 * naming what is wrong; a wallet that cannot be reached is unavailable (nothing is stored).
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { EscrowState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import type { WalletPort } from "@tessera/sdk/peer-clients";
import { PeerError } from "@tessera/sdk/peer-error";
import { failedPrecondition, JobServerError } from "../errors.js";
import type { CheckedSpec } from "../jobs/spec-check.js";

/** What the escrow of a paid job is checked against. */
export interface EscrowCheck {
  /** The signed caller (the job's owner). */
  readonly caller: string;
  readonly checked: CheckedSpec;
  /** This job server's address: the escrow's arbiter. */
  readonly selfAddress: string;
}

/**
 * Checks a paid job's escrow with `wallet` (undefined: this job server has no wallet).
 * @throws JobServerError failed_precondition naming the problem; unavailable when the wallet
 * cannot be reached.
 */
export async function checkJobEscrow(
  wallet: WalletPort | undefined,
  input: EscrowCheck,
): Promise<void> {
  const { caller, checked, selfAddress } = input;
  const spec = checked.spec;
  if (wallet === undefined) {
    throw failedPrecondition(
      "spec.payment_amount: this job server runs free jobs only (it has no wallet configured)",
    );
  }
  if (spec.payerAddress !== caller) {
    throw failedPrecondition(
      `spec.payer_address: must be the signed caller ${caller}, who funded the escrow`,
    );
  }
  const escrowId = spec.escrowId;
  let escrow: Awaited<ReturnType<WalletPort["getEscrow"]>>;
  try {
    escrow = await wallet.getEscrow(escrowId);
  } catch (error) {
    if (!(error instanceof PeerError)) throw error;
    if (error.kind === "unreachable") {
      throw new JobServerError(
        "unavailable",
        `the wallet cannot be reached to check escrow ${escrowId}; nothing was stored, retry`,
        { cause: error },
      );
    }
    if (error.code === "not_found") {
      throw failedPrecondition(`spec.escrow_id: escrow ${escrowId} does not exist`);
    }
    if (error.code === "permission_denied") {
      throw failedPrecondition(
        `spec.escrow_id: escrow ${escrowId} is not arbitrated by this job server (${selfAddress})`,
      );
    }
    throw failedPrecondition(
      `spec.escrow_id: the wallet refused to show escrow ${escrowId} (${error.message})`,
    );
  }
  if (escrow.state !== EscrowState.HELD) {
    throw failedPrecondition(
      `spec.escrow_id: escrow ${escrowId} is ${EscrowState[escrow.state] ?? "unknown"}, not open (HELD)`,
    );
  }
  if (escrow.arbiterAddress !== selfAddress) {
    throw failedPrecondition(
      `spec.escrow_id: escrow ${escrowId} names arbiter ${escrow.arbiterAddress}, not this job server (${selfAddress})`,
    );
  }
  if (escrow.payerAddress !== caller) {
    throw failedPrecondition(
      `spec.escrow_id: escrow ${escrowId} was funded by ${escrow.payerAddress}, not by the caller`,
    );
  }
  if (escrow.jobId !== checked.jobId) {
    throw failedPrecondition(
      `spec.escrow_id: escrow ${escrowId} is bound to job "${escrow.jobId}", not "${checked.jobId}"`,
    );
  }
  if (!/^[0-9]{1,78}$/.test(escrow.amount) || BigInt(escrow.amount) < checked.paymentAmount) {
    throw failedPrecondition(
      `spec.payment_amount: ${checked.paymentAmount} is above the ${escrow.amount} held in escrow ${escrowId}`,
    );
  }
  const escrowExpiresMs = escrow.expiresAt === undefined ? 0 : timestampMs(escrow.expiresAt);
  if (escrowExpiresMs <= checked.expiresAtMs) {
    throw failedPrecondition(
      `spec.expires_at: the job (until ${new Date(checked.expiresAtMs).toISOString()}) must end before escrow ${escrowId} expires (${new Date(escrowExpiresMs).toISOString()})`,
    );
  }
  if (escrow.paymentTree !== undefined) {
    throw failedPrecondition(
      `spec.escrow_id: escrow ${escrowId} fixes a payment tree; the job server settles by the validators' tree, so fund the escrow without one`,
    );
  }
}
