/**
 * WalletService handlers: proto requests to ledger calls and back. The ledger decides; this file
 * checks the protocol version, takes the verified caller from the signed-request interceptor
 * (@tessera/auth), converts times, and maps errors with {@link toConnectError}.
 *
 * Every RPC but GetStake needs a signed caller (`requireCaller`: unauthenticated otherwise): the
 * state-changing ones because the caller must be the payer, arbiter or owner, and the reads
 * (GetBalance, GetEscrow, GetTransactionHistory) because only the owner, a party of the escrow or
 * a configured reader may see them. The server must install @tessera/auth's
 * createVerifyingInterceptor.
 *
 * Once the ledger has queued an operation it runs to its commit even if the caller goes away
 * (an operation never half-applies); the answer is then simply not delivered, and a retry with
 * the same id returns it.
 */
import { timestampDate, timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { requireCaller } from "@tessera/auth";
import type { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { StoreConflictError } from "@tessera/store";
import { WalletError, type WalletErrorKind } from "./ledger/errors.js";
import type { Ledger } from "./ledger/ledger.js";
import { checkProtocolVersion } from "./ledger/protocol-version.js";

/** What {@link createWalletService} needs. */
export interface WalletServiceDeps {
  /** The ledger (./ledger/ledger.ts), with its faucet and readers configured. */
  readonly ledger: Ledger;
}

const CODE_OF: Readonly<Record<WalletErrorKind, Code>> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  permission_denied: Code.PermissionDenied,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  unimplemented: Code.Unimplemented,
};

/**
 * The one mapping of errors to Connect codes for the wallet's handlers: a WalletError to its
 * kind's code with its message, a ConnectError unchanged, a transaction that kept losing to
 * concurrent ones `unavailable` (nothing was written; retrying is safe), anything else `internal`
 * with a generic message and the original as `cause` (the runtime logs it; the client never sees
 * it).
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof WalletError) return new ConnectError(error.message, CODE_OF[error.kind]);
  if (error instanceof StoreConflictError) {
    return new ConnectError(
      "the ledger is busy; nothing was written, retry the call",
      Code.Unavailable,
      undefined,
      undefined,
      error,
    );
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/** Runs a unary handler body, mapping whatever it throws. */
async function translate<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw toConnectError(error);
  }
}

/** The full WalletService over `deps.ledger`. */
export function createWalletService(deps: WalletServiceDeps): ServiceImpl<typeof WalletService> {
  const { ledger } = deps;

  return {
    getBalance: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "GetBalance");
        const balance = await ledger.balance(req.address, caller);
        return {
          address: balance.address,
          available: balance.available.toString(),
          held: balance.held.toString(),
          staked: balance.staked.toString(),
          total: balance.total.toString(),
          asOf: timestampFromDate(balance.asOf),
        };
      }),

    transfer: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "Transfer");
        const transaction = await ledger.transfer(caller, {
          transferId: req.transferId,
          fromAddress: req.fromAddress,
          toAddress: req.toAddress,
          amount: req.amount,
          referenceId: req.referenceId,
          memo: req.memo,
        });
        return { transaction };
      }),

    createEscrow: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "CreateEscrow");
        return ledger.createEscrow(caller, {
          escrowId: req.escrowId,
          jobId: req.jobId,
          payerAddress: req.payerAddress,
          amount: req.amount,
          arbiterAddress: req.arbiterAddress,
          expiresAt: req.expiresAt === undefined ? undefined : timestampDate(req.expiresAt),
          paymentTree: req.paymentTree,
        });
      }),

    getEscrow: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "GetEscrow");
        return { escrow: await ledger.getEscrow(req.escrowId, caller) };
      }),

    releaseEscrow: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "ReleaseEscrow");
        const { escrow, transactions } = await ledger.releaseEscrow(caller, {
          escrowId: req.escrowId,
          completionValidation: req.completionValidation,
        });
        return { escrow, transactions: [...transactions] };
      }),

    refundEscrow: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "RefundEscrow");
        return ledger.refundEscrow(caller, {
          escrowId: req.escrowId,
          reason: req.reason,
          completionValidation: req.completionValidation,
        });
      }),

    getTransactionHistory: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "GetTransactionHistory");
        const page = await ledger.history(
          {
            address: req.address,
            kinds: req.kinds,
            startMs: req.startTime === undefined ? undefined : timestampMs(req.startTime),
            endMs: req.endTime === undefined ? undefined : timestampMs(req.endTime),
            counterparty: req.counterparty,
            referenceId: req.referenceId,
            pageSize: req.pageSize,
            pageToken: req.pageToken,
          },
          caller,
        );
        return { transactions: [...page.transactions], nextPageToken: page.nextPageToken };
      }),

    lockStake: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "LockStake");
        return ledger.lockStake(caller, {
          stakeId: req.stakeId,
          stakerAddress: req.stakerAddress,
          amount: req.amount,
          arbiterAddress: req.arbiterAddress,
        });
      }),

    unlockStake: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "UnlockStake");
        const { stake, transaction } = await ledger.unlockStake(caller, {
          stakeId: req.stakeId,
          reason: req.reason,
        });
        return transaction === undefined ? { stake } : { stake, transaction };
      }),

    slashStake: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "SlashStake");
        return ledger.slashStake(caller, {
          slashId: req.slashId,
          stakeId: req.stakeId,
          amount: req.amount,
          beneficiaryAddress: req.beneficiaryAddress,
          reason: req.reason,
        });
      }),

    getStake: (req) =>
      translate(async () => {
        checkProtocolVersion(req.protocolVersion, "GetStake");
        return { stake: await ledger.getStake(req.stakeId) };
      }),

    faucet: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "Faucet");
        const transaction = await ledger.faucet(caller, {
          transferId: req.transferId,
          address: req.address,
          amount: req.amount,
        });
        return { transaction };
      }),
  };
}
