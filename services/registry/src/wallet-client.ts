/**
 * The registry's way to the wallet: a WalletService client over HTTP/2 (one kept session) whose
 * calls are signed with the process's key for the wallet's address, and the registry's two uses
 * of it: finding the transfer that paid a subnet fee (GetTransactionHistory, which the wallet
 * answers because its READERS list the registry) and the validator stakes the registry arbitrates
 * (GetStake, UnlockStake, SlashStake). Wallet failures become DirectoryErrors.
 */
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import type { KeyPair } from "@tessera/identity/keys";
import {
  type Stake,
  StakeState,
  TransactionKind,
} from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { DirectoryError } from "./directory/errors.js";
import type { StakeLedger, WalletStake, WalletStakeState } from "./directory/stakes.js";
import type { FeePaymentLedger } from "./subnets/fee-payments.js";
import { PROTOCOL_VERSION } from "./validation/protocol-version.js";

/** Options of {@link connectWallet}. */
export interface WalletConnectionOptions {
  /** Base URL of the wallet (WALLET_URL). */
  readonly walletUrl: string;
  /** The wallet's address (WALLET_ADDRESS): every call is signed for it. */
  readonly walletAddress: string;
  /** The key the calls are signed with. */
  readonly keyPair: KeyPair;
  /** Nonce source shared with the process's other signing clients; default a new one. */
  readonly nonceSource?: (() => bigint) | undefined;
  /** Deadline of each call, in milliseconds; default 5000. */
  readonly timeoutMs?: number | undefined;
}

/** A signed WalletService client with its session. */
export interface WalletConnection {
  readonly client: Client<typeof WalletService>;
  /** The deadline to give each call, in milliseconds. */
  readonly timeoutMs: number;
  /** Closes the HTTP/2 session. Safe to call twice. */
  close(): void;
}

/** Opens a {@link WalletConnection} (lazily: nothing is dialled before the first call). */
export function connectWallet(options: WalletConnectionOptions): WalletConnection {
  const session = new Http2SessionManager(options.walletUrl);
  const client = createClient(
    WalletService,
    createConnectTransport({
      baseUrl: options.walletUrl,
      httpVersion: "2",
      sessionManager: session,
      interceptors: [
        createSigningInterceptor({
          keyPair: options.keyPair,
          target: options.walletAddress,
          nonceSource: options.nonceSource,
        }),
      ],
    }),
  );
  return { client, timeoutMs: options.timeoutMs ?? 5000, close: () => session.abort() };
}

/** The wallet as the registry uses it: fee payments and the validator stakes it arbitrates. */
export interface RegistryWallet extends FeePaymentLedger, StakeLedger {
  /** Closes the connection. Safe to call twice. */
  close(): void;
}

/** History entries read per page while looking for a fee transfer. */
const HISTORY_PAGE_SIZE = 100;

/**
 * The registry's {@link RegistryWallet} over a signed connection. The wallet must list the
 * registry's address in its READERS (to read a gateway's transfers); the registry is the arbiter
 * of the stakes it unlocks and slashes.
 */
export function createRegistryWallet(options: WalletConnectionOptions): RegistryWallet {
  const { client, timeoutMs, close } = connectWallet(options);

  async function call<T>(what: string, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (error) {
      throw walletError(what, error);
    }
  }

  return {
    async findTransfer(query) {
      let pageToken = "";
      do {
        const page = await call(`transfers of ${query.payer}`, () =>
          client.getTransactionHistory(
            {
              protocolVersion: PROTOCOL_VERSION,
              address: query.payer,
              kinds: [TransactionKind.TRANSFER],
              referenceId: query.referenceId,
              pageSize: HISTORY_PAGE_SIZE,
              pageToken,
            },
            { timeoutMs },
          ),
        );
        const found = page.transactions.find(
          (tx) => tx.transactionId === query.transferId && tx.debitAccount === query.payer,
        );
        if (found !== undefined) {
          return {
            transferId: found.transactionId,
            fromAddress: found.debitAccount,
            toAddress: found.creditAccount,
            amount: BigInt(found.amount),
            referenceId: found.referenceId,
          };
        }
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return undefined;
    },

    async getStake(stakeId) {
      try {
        const { stake } = await client.getStake(
          { protocolVersion: PROTOCOL_VERSION, stakeId },
          { timeoutMs },
        );
        return stake === undefined ? undefined : stakeOf(stake);
      } catch (error) {
        if (ConnectError.from(error).code === Code.NotFound) return undefined;
        throw walletError(`stake ${stakeId}`, error);
      }
    },

    async unlockStake(stakeId, reason) {
      const { stake } = await call(`unlocking stake ${stakeId}`, () =>
        client.unlockStake({ protocolVersion: PROTOCOL_VERSION, stakeId, reason }, { timeoutMs }),
      );
      return requireStake(stake, stakeId);
    },

    async slashStake(slash) {
      const { stake } = await call(`slashing stake ${slash.stakeId}`, () =>
        client.slashStake(
          {
            protocolVersion: PROTOCOL_VERSION,
            slashId: slash.slashId,
            stakeId: slash.stakeId,
            amount: slash.amount.toString(),
            beneficiaryAddress: slash.beneficiaryAddress,
            reason: slash.reason,
          },
          { timeoutMs },
        ),
      );
      return requireStake(stake, slash.stakeId);
    },

    close,
  };
}

const STATE_OF: Readonly<Partial<Record<StakeState, WalletStakeState>>> = {
  [StakeState.LOCKED]: "locked",
  [StakeState.UNLOCKED]: "unlocked",
  [StakeState.SLASHED]: "slashed",
};

function stakeOf(stake: Stake): WalletStake {
  const state = STATE_OF[stake.state];
  if (state === undefined) {
    throw new DirectoryError(
      "unavailable",
      `the wallet reported stake ${stake.stakeId} in no state`,
    );
  }
  return {
    stakeId: stake.stakeId,
    stakerAddress: stake.stakerAddress,
    arbiterAddress: stake.arbiterAddress,
    amount: BigInt(stake.amount),
    state,
  };
}

function requireStake(stake: Stake | undefined, stakeId: string): WalletStake {
  if (stake === undefined) {
    throw new DirectoryError("unavailable", `the wallet answered without stake ${stakeId}`);
  }
  return stakeOf(stake);
}

/**
 * A wallet failure as the registry reports it: the wallet's verdict on the request itself
 * (not found, wrong state, id reused) keeps its meaning; anything else (unreachable, overloaded,
 * refusing the registry's signature or read) is "unavailable", naming what was asked.
 */
function walletError(what: string, error: unknown): DirectoryError {
  const connectError = ConnectError.from(error);
  const message = `wallet: ${what}: ${connectError.rawMessage}`;
  switch (connectError.code) {
    case Code.NotFound:
      return new DirectoryError("not_found", message);
    case Code.FailedPrecondition:
      return new DirectoryError("failed_precondition", message);
    case Code.AlreadyExists:
      return new DirectoryError("conflict", message);
    case Code.PermissionDenied:
    case Code.Unauthenticated:
      return new DirectoryError(
        "unavailable",
        `the wallet refused the registry (${what}): ${connectError.rawMessage}`,
      );
    default:
      return new DirectoryError(
        "unavailable",
        `the wallet is unavailable (${what}): ${connectError.rawMessage}`,
      );
  }
}
