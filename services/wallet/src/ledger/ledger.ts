/**
 * The wallet's ledger: a double-entry book of accounts on @tessera/store (SQLite or PostgreSQL)
 * with transfers, escrows released by payment tree against validators' completion approvals,
 * stakes, a development faucet and genesis allocations. No Connect here: callers pass the
 * verified caller address, errors are {@link WalletError}s, results are the wire records of
 * tessera.wallet.v1.
 *
 * Guarantees:
 * - Every movement is an entry between two accounts, written in the same database transaction as
 *   both accounts' new totals (./committer.ts); no account but "faucet" goes below zero, so the
 *   supply only changes through genesis and the faucet, both FAUCET entries.
 * - Client-chosen ids make each operation exactly-once: the same id with the same request returns
 *   the original entry (and the escrow or stake as it is now); with a different request it fails
 *   with `already_exists`.
 * - A refused operation changes nothing: inputs are checked before anything is queued, and an
 *   operation refused inside a batch is rolled back without touching the others.
 * - Acknowledged means committed (durable on disk on SQLite with synchronous=FULL, committed on
 *   PostgreSQL).
 */
import { create, toBinary } from "@bufbuild/protobuf";
import type { BundleVerdict } from "@tessera/identity/validation-bundle";
import {
  type CompletionValidation,
  CompletionValidationSchema,
  type PaymentTree,
  PaymentTreeSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type Escrow,
  EscrowState,
  type Stake,
  StakeState,
  type TransactionRecord,
} from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { fromMoney, type Store } from "@tessera/store";
import { sql } from "kysely";
import { type BundleVerifier, sharedBundleVerifier } from "./bundle-verifier.js";
import { type Committer, createCommitter } from "./committer.js";
import { invalidArgument, WalletError } from "./errors.js";
import { type HistoryQuery, readHistory } from "./history.js";
import { checkAddress, checkId, checkText, checkTransactionId, parseAmount } from "./input.js";
import {
  checkLedgerInvariants,
  type InvariantOptions,
  type InvariantReport,
} from "./invariants.js";
import { releaseTreeProblem } from "./operations.js";
import { type ParsedPaymentTree, parsePaymentTree } from "./payment-tree.js";
import {
  bytesFingerprint,
  type EscrowRow,
  entryToRecord,
  escrowFromDb,
  escrowToRecord,
  escrowTree,
  fingerprint,
  stakeFromDb,
  stakeToRecord,
  WALLET_PROTOCOL_VERSION,
} from "./records.js";
import type { WalletTables } from "./tables.js";
import type { ValidatorSetSource } from "./validator-set-source.js";

/** The development faucet's limits; the faucet exists only when these are given. */
export interface FaucetOptions {
  /** Most base units one Faucet call may credit. */
  readonly perCallLimit: bigint;
  /** Most base units one address may receive from the faucet per UTC day. */
  readonly perDayLimit: bigint;
}

/** One genesis allocation: money minted to `address` once, when the ledger is first set up. */
export interface GenesisAllocation {
  readonly address: string;
  /** Decimal string of base units (or a bigint), greater than zero, at most 2^64 - 1. */
  readonly amount: string | bigint;
}

/** What {@link createLedger} needs. */
export interface LedgerOptions<DB extends WalletTables = WalletTables> {
  /**
   * A store opened with `walletMigrations` (plus any other module's, e.g. the nonce store's when
   * the server keeps its replay guard in the same database).
   */
  readonly store: Store<DB>;
  /** The validators whose completion approvals release escrows. */
  readonly validatorSet: ValidatorSetSource;
  /** The wallet's clock. Defaults to the system clock. */
  readonly clock?: (() => Date) | undefined;
  /** The faucet's limits; absent (the default) disables the faucet. */
  readonly faucet?: FaucetOptions | undefined;
  /**
   * Addresses allowed to read any balance, history or escrow (e.g. the registry checking a subnet
   * fee payment). Everyone else reads only their own. Defaults to none.
   */
  readonly readers?: Iterable<string> | undefined;
  /** Most operations committed in one database transaction. Defaults to 256. */
  readonly maxBatchOps?: number | undefined;
  /**
   * What verifies completion validations. Defaults to the process-wide worker pool
   * (./bundle-verifier.ts); the ledger never closes it.
   */
  readonly verifier?: BundleVerifier | undefined;
}

/** An address's money, in base units. `total` = `available` + `held` + `staked`. */
export interface Balance {
  readonly address: string;
  readonly available: bigint;
  /** In escrows the address paid into that are still held. */
  readonly held: bigint;
  /** In the address's locked stakes. */
  readonly staked: bigint;
  readonly total: bigint;
  /** When the balance was read. */
  readonly asOf: Date;
}

/** Transfer request fields (TransferRequest). */
export interface TransferInput {
  readonly transferId: string;
  readonly fromAddress: string;
  readonly toAddress: string;
  readonly amount: string;
  readonly referenceId?: string | undefined;
  readonly memo?: string | undefined;
}

/** CreateEscrow request fields (CreateEscrowRequest). */
export interface CreateEscrowInput {
  readonly escrowId: string;
  readonly jobId: string;
  readonly payerAddress: string;
  readonly amount: string;
  readonly arbiterAddress: string;
  readonly expiresAt: Date | undefined;
  readonly paymentTree?: PaymentTree | undefined;
}

/** ReleaseEscrow request fields. */
export interface ReleaseEscrowInput {
  readonly escrowId: string;
  readonly completionValidation: CompletionValidation | undefined;
}

/** RefundEscrow request fields. */
export interface RefundEscrowInput {
  readonly escrowId: string;
  readonly reason?: string | undefined;
  readonly completionValidation?: CompletionValidation | undefined;
}

/** LockStake request fields. */
export interface LockStakeInput {
  readonly stakeId: string;
  readonly stakerAddress: string;
  readonly amount: string;
  readonly arbiterAddress: string;
}

/** UnlockStake request fields. */
export interface UnlockStakeInput {
  readonly stakeId: string;
  readonly reason?: string | undefined;
}

/** SlashStake request fields. */
export interface SlashStakeInput {
  readonly slashId: string;
  readonly stakeId: string;
  readonly amount: string;
  readonly beneficiaryAddress: string;
  readonly reason?: string | undefined;
}

/** Faucet request fields. */
export interface FaucetInput {
  readonly transferId: string;
  readonly address: string;
  readonly amount: string;
}

/** An escrow and one entry. */
export interface EscrowResult {
  readonly escrow: Escrow;
  readonly transaction: TransactionRecord;
}

/** A released escrow and its entries. */
export interface ReleaseResult {
  readonly escrow: Escrow;
  /** One ESCROW_RELEASE per non-zero payout, then an ESCROW_REFUND for a remainder. */
  readonly transactions: readonly TransactionRecord[];
}

/** A stake and the entry that changed it. */
export interface StakeResult {
  readonly stake: Stake;
  readonly transaction: TransactionRecord;
}

/** An unlocked stake and the entry that returned its money (absent when nothing remained). */
export interface UnlockResult {
  readonly stake: Stake;
  readonly transaction: TransactionRecord | undefined;
}

/** One page of history. */
export interface HistoryResult {
  readonly transactions: readonly TransactionRecord[];
  readonly nextPageToken: string;
}

/** The ledger; see the module comment. Every method throws {@link WalletError}s for refusals. */
export interface Ledger {
  /** Whether the faucet is enabled. */
  readonly faucetEnabled: boolean;
  /**
   * An address's balance. `reader` must be the address or a configured reader
   * (permission_denied otherwise).
   */
  balance(address: string, reader: string): Promise<Balance>;
  /**
   * Moves `amount` from `fromAddress` (which must be `caller`) to `toAddress`. Idempotent on
   * `transferId`. failed_precondition (insufficient_funds) above the available balance;
   * invalid_argument for a transfer to oneself.
   */
  transfer(caller: string, input: TransferInput): Promise<TransactionRecord>;
  /**
   * Moves `amount` from the payer (who must be `caller`) into a new escrow for `jobId` that
   * `arbiterAddress` may release or refund. A payment tree, when given, must add up to at most
   * the amount, and the release must then carry exactly that tree. Idempotent on `escrowId`.
   */
  createEscrow(caller: string, input: CreateEscrowInput): Promise<EscrowResult>;
  /**
   * An escrow. `reader` must be its payer, its arbiter, a payee of its tree or a configured
   * reader. not_found for an unknown id.
   */
  getEscrow(escrowId: string, reader: string): Promise<Escrow>;
  /**
   * Pays a held escrow out by its completion validation, in one transaction: the validation must
   * carry at least M valid signatures of the current validator set (checked by
   * `verifyValidationBundle` of @tessera/identity, on a worker thread), approve the work, name the
   * escrow's job id, and carry the escrow's tree, byte for byte (or, when the escrow has none, a
   * valid tree that adds up to at most its amount). Every refusal is failed_precondition
   * (invalid_validation); unavailable when the validator set cannot be read. Each payee is paid its share (validators by the remainder
   * rule of ./payment-tree.ts), and what the tree leaves goes back to the payer. Only the arbiter
   * may release; releasing again with the same validation returns the same result.
   */
  releaseEscrow(caller: string, input: ReleaseEscrowInput): Promise<ReleaseResult>;
  /**
   * Returns a held escrow to its payer: by the arbiter any time, by the payer once it expired
   * (failed_precondition not_expired before). Refunding a refunded escrow returns it; a released
   * one fails with failed_precondition. A rejection validation, when given, must be for this job
   * and reject the work (it is not needed: the arbiter may refund without one).
   */
  refundEscrow(caller: string, input: RefundEscrowInput): Promise<EscrowResult>;
  /** One page of an account's entries, newest first. `reader` as for {@link balance}. */
  history(query: HistoryQuery, reader: string): Promise<HistoryResult>;
  /** Locks `amount` of the staker's (= `caller`'s) money in a new stake. Idempotent on `stakeId`. */
  lockStake(caller: string, input: LockStakeInput): Promise<StakeResult>;
  /** Returns what remains of a stake to its staker; only its arbiter may. Idempotent. */
  unlockStake(caller: string, input: UnlockStakeInput): Promise<UnlockResult>;
  /**
   * Takes up to `amount` of a locked stake and pays it to the beneficiary; only its arbiter may.
   * More than remains is lowered to what remains. Idempotent on `slashId`.
   */
  slashStake(caller: string, input: SlashStakeInput): Promise<StakeResult>;
  /** A stake; not_found for an unknown id. Anyone may read stakes. */
  getStake(stakeId: string): Promise<Stake>;
  /**
   * Credits development money from the "faucet" account: unimplemented when the faucet is
   * disabled, resource_exhausted above the per-call or per-day limit. Idempotent on `transferId`.
   */
  faucet(caller: string, input: FaucetInput): Promise<TransactionRecord>;
  /**
   * Mints each allocation once ("genesis:<address>" entries of kind FAUCET). Running it again with
   * the same allocations changes nothing; a different amount for an address already allocated
   * fails with failed_precondition (genesis cannot change). Call it once at start-up.
   */
  applyGenesis(allocations: readonly GenesisAllocation[]): Promise<void>;
  /** Checks the ledger's invariants (./invariants.ts). */
  checkInvariants(options?: InvariantOptions): Promise<InvariantReport>;
  /** Stops taking operations and waits for queued ones. Does not close the store. Safe twice. */
  close(): Promise<void>;
}

/** The ledger over `options.store`; see {@link Ledger}. */
export function createLedger<DB extends WalletTables>(options: LedgerOptions<DB>): Ledger {
  const { validatorSet, faucet } = options;
  // The store's DB type includes the ledger's tables; Kysely cannot see that through the generic.
  const store = options.store as unknown as Store<WalletTables>;
  const clock = options.clock ?? (() => new Date());
  const readers = new Set(options.readers ?? []);
  const committer: Committer = createCommitter({
    store,
    clock,
    maxBatchOps: options.maxBatchOps,
  });
  const db = store.db;
  const verifier = options.verifier ?? sharedBundleVerifier();

  const escrowTerms = new Map<string, EscrowTerms>();
  /** Caches what never changes about `escrow` (bounded; the oldest entries go first). */
  const remember = (escrow: EscrowRow): EscrowTerms => {
    const terms: EscrowTerms = {
      escrowId: escrow.escrowId,
      jobId: escrow.jobId,
      arbiterAddress: escrow.arbiterAddress,
      amount: escrow.amount,
      treeBase64: escrow.treeBase64,
    };
    if (escrowTerms.size >= ESCROW_TERMS_CACHE_SIZE) {
      const oldest = escrowTerms.keys().next();
      if (oldest.done !== true) escrowTerms.delete(oldest.value);
    }
    escrowTerms.set(escrow.escrowId, terms);
    return terms;
  };

  const mayRead = (reader: string, owners: readonly string[]) =>
    readers.has(reader) || owners.includes(reader);

  async function readEscrow(escrowId: string): Promise<EscrowRow | undefined> {
    const row = await db
      .selectFrom("wallet_escrow")
      .selectAll()
      .where("escrow_id", "=", escrowId)
      .executeTakeFirst();
    return row === undefined ? undefined : escrowFromDb(row);
  }

  /** The tree to pay when `validation` releases `escrow`, once every check passed. */
  async function checkCompletionValidation(
    escrow: EscrowTerms,
    validation: CompletionValidation,
    encoded: Uint8Array,
  ): Promise<ParsedPaymentTree> {
    const refuse = (problem: string) =>
      new WalletError("failed_precondition", `completion_validation: ${problem}`, {
        reason: "invalid_validation",
      });
    const terms = validation.terms;
    if (terms === undefined) throw refuse("the validation has no terms");
    const version = terms.protocolVersion;
    if (version === undefined || version.major !== WALLET_PROTOCOL_VERSION.major) {
      throw refuse(
        `the terms speak protocol ${version === undefined ? "(none)" : `${version.major}.${version.minor}.${version.patch}`}, not ${WALLET_PROTOCOL_VERSION.major}.x`,
      );
    }
    if (terms.requestId !== escrow.jobId) {
      throw refuse(`it is for request "${terms.requestId}", the escrow pays for "${escrow.jobId}"`);
    }
    if (
      terms.computeCompletion !== undefined &&
      terms.computeCompletion.requestId !== escrow.jobId
    ) {
      throw refuse("its compute completion is for another request");
    }
    if (!terms.approved) {
      throw refuse("the validators rejected the work (refund the escrow instead)");
    }
    if (terms.paymentTree === undefined) throw refuse("the terms have no payment tree");
    let tree: ParsedPaymentTree;
    try {
      tree = parsePaymentTree("completion_validation.terms.payment_tree", terms.paymentTree);
    } catch (error) {
      if (error instanceof WalletError) throw refuse(error.message);
      throw error;
    }
    const problem = releaseTreeProblem(escrow, tree);
    if (problem !== undefined) throw refuse(problem);

    let set: Awaited<ReturnType<ValidatorSetSource["getValidatorSet"]>>;
    try {
      set = await validatorSet.getValidatorSet();
    } catch (error) {
      throw new WalletError("unavailable", "the validator set cannot be read; try again", {
        cause: error,
      });
    }
    if (!Number.isInteger(set.quorum) || set.quorum < 1 || set.addresses.length === 0) {
      throw new WalletError(
        "unavailable",
        "the validator set is empty; no completion validation can be checked",
      );
    }
    let verdict: BundleVerdict;
    try {
      verdict = await verifier.verify(encoded, set.addresses, set.quorum);
    } catch (error) {
      throw new WalletError(
        "unavailable",
        "the completion validation could not be checked; try again",
        {
          cause: error,
        },
      );
    }
    if (!verdict.valid) throw refuse(`it does not verify: ${verdict.reason}`);
    return tree;
  }

  return {
    faucetEnabled: faucet !== undefined,

    async balance(address, reader) {
      checkAddress("address", address);
      if (!mayRead(reader, [address])) {
        throw new WalletError("permission_denied", "only the address itself may read its balance");
      }
      // One statement: one snapshot on PostgreSQL, so total = available + held + staked holds.
      const { rows } = await sql<{ k: string; x: string; y: string }>`
        select 'a' as k, credits as x, debits as y from wallet_account where account_id = ${address}
        union all
        select 'e' as k, amount as x, amount as y from wallet_escrow
          where payer_address = ${address} and state = ${EscrowState.HELD}
        union all
        select 's' as k, amount as x, amount as y from wallet_stake
          where staker_address = ${address} and state = ${StakeState.LOCKED}
      `.execute(db);
      let available = 0n;
      let held = 0n;
      let staked = 0n;
      for (const row of rows) {
        if (row.k === "a") available = fromMoney(row.x) - fromMoney(row.y);
        else if (row.k === "e") held += fromMoney(row.x);
        else staked += fromMoney(row.x);
      }
      return {
        address,
        available,
        held,
        staked,
        total: available + held + staked,
        asOf: clock(),
      };
    },

    async transfer(caller, input) {
      const transferId = checkTransactionId("transfer_id", input.transferId);
      const from = checkAddress("from_address", input.fromAddress);
      const to = checkAddress("to_address", input.toAddress);
      const amount = parseAmount("amount", input.amount);
      const referenceId = checkText("reference_id", input.referenceId ?? "");
      const memo = checkText("memo", input.memo ?? "");
      if (from === to) throw invalidArgument("to_address", "a transfer to oneself is refused");
      if (caller !== from) {
        throw new WalletError("permission_denied", "only the owner of from_address may transfer");
      }
      const entry = await committer.submit({
        type: "transfer",
        transferId,
        from,
        to,
        amount,
        referenceId,
        memo,
        hash: fingerprint(["transfer", from, to, amount, referenceId, memo]),
      });
      return entryToRecord(entry);
    },

    async createEscrow(caller, input) {
      const escrowId = checkId("escrow_id", input.escrowId);
      const jobId = checkJobId(input.jobId);
      const payer = checkAddress("payer_address", input.payerAddress);
      const arbiter = checkAddress("arbiter_address", input.arbiterAddress);
      const amount = parseAmount("amount", input.amount);
      const expiresAtMs = checkExpiry(input.expiresAt);
      const tree =
        input.paymentTree === undefined
          ? undefined
          : parsePaymentTree("payment_tree", input.paymentTree);
      if (tree !== undefined && tree.total > amount) {
        throw invalidArgument(
          "payment_tree",
          `its shares add up to ${tree.total}, more than the escrow's amount ${amount}`,
        );
      }
      if (caller !== payer) {
        throw new WalletError("permission_denied", "only the payer may fund an escrow");
      }
      const { escrow, entry } = await committer.submit({
        type: "create_escrow",
        escrowId,
        jobId,
        payer,
        arbiter,
        amount,
        expiresAtMs,
        tree,
        hash: fingerprint([
          "create_escrow",
          jobId,
          payer,
          arbiter,
          amount,
          expiresAtMs,
          tree?.encoded ?? null,
        ]),
      });
      remember(escrow);
      return { escrow: escrowToRecord(escrow, tree?.tree), transaction: entryToRecord(entry) };
    },

    async getEscrow(escrowId, reader) {
      checkId("escrow_id", escrowId);
      const escrow = await readEscrow(escrowId);
      if (escrow === undefined)
        throw new WalletError("not_found", `escrow ${escrowId} does not exist`);
      const tree = escrowTree(escrow);
      const owners = [escrow.payerAddress, escrow.arbiterAddress];
      if (tree !== undefined) {
        owners.push(tree.computeAddress, tree.gatewayAddress, tree.treasuryAddress);
        owners.push(...tree.validatorAddresses);
      }
      if (
        !mayRead(
          reader,
          owners.filter((owner) => owner !== ""),
        )
      ) {
        throw new WalletError(
          "permission_denied",
          "only the payer, the arbiter or a payee may read an escrow",
        );
      }
      return escrowToRecord(escrow);
    },

    async releaseEscrow(caller, input) {
      const escrowId = checkId("escrow_id", input.escrowId);
      const validation = input.completionValidation;
      if (validation === undefined) {
        throw invalidArgument("completion_validation", "is required to release an escrow");
      }
      const encoded = toBinary(CompletionValidationSchema, validation);
      const releaseHash = bytesFingerprint(encoded);
      // What never changes about the escrow, from memory when this ledger has seen it.
      let peeked: EscrowRow | undefined;
      let terms = escrowTerms.get(escrowId);
      if (terms === undefined) {
        peeked = await readEscrow(escrowId);
        if (peeked === undefined) {
          throw new WalletError("not_found", `escrow ${escrowId} does not exist`);
        }
        terms = remember(peeked);
      }
      if (caller !== terms.arbiterAddress) {
        throw new WalletError(
          "permission_denied",
          `only the arbiter of escrow ${escrowId} may release it`,
        );
      }
      let tree: ParsedPaymentTree;
      const settled = peeked === undefined ? undefined : settledRelease(peeked, releaseHash);
      if (settled !== undefined) {
        tree = settled;
      } else {
        try {
          tree = await checkCompletionValidation(terms, validation, encoded);
        } catch (error) {
          // A validation that does not verify (or cannot be checked now) may be a retry of a
          // release that committed, or be for an escrow that is settled: its state says which.
          const refused =
            error instanceof WalletError &&
            (error.reason === "invalid_validation" || error.kind === "unavailable");
          const current = refused ? (peeked ?? (await readEscrow(escrowId))) : undefined;
          const answer = current === undefined ? undefined : settledRelease(current, releaseHash);
          if (answer === undefined) throw error;
          tree = answer;
        }
      }
      const result = await committer.submit({
        type: "release",
        caller,
        escrowId,
        tree,
        releaseHash,
      });
      return {
        escrow: escrowToRecord(
          result.escrow,
          result.escrow.treeBase64 === tree.encoded ? tree.tree : undefined,
        ),
        transactions: result.entries.map(entryToRecord),
      };
    },

    async refundEscrow(caller, input) {
      const escrowId = checkId("escrow_id", input.escrowId);
      const reason = checkText("reason", input.reason ?? "");
      const rejection = input.completionValidation;
      if (rejection !== undefined) {
        const escrow = await readEscrow(escrowId);
        if (escrow !== undefined && rejection.terms?.requestId !== escrow.jobId) {
          throw invalidArgument(
            "completion_validation",
            "is for another request than the escrow's job",
          );
        }
        if (rejection.terms?.approved !== false) {
          throw invalidArgument("completion_validation", "a refund may carry only a rejection");
        }
      }
      const { escrow, entry } = await committer.submit({
        type: "refund",
        caller,
        escrowId,
        reason,
      });
      return { escrow: escrowToRecord(escrow), transaction: entryToRecord(entry) };
    },

    async history(query, reader) {
      if (!mayRead(reader, [query.address])) {
        throw new WalletError("permission_denied", "only the address itself may read its history");
      }
      const page = await readHistory(db, query);
      return {
        transactions: page.entries.map(entryToRecord),
        nextPageToken: page.nextPageToken,
      };
    },

    async lockStake(caller, input) {
      const stakeId = checkId("stake_id", input.stakeId);
      const staker = checkAddress("staker_address", input.stakerAddress);
      const arbiter = checkAddress("arbiter_address", input.arbiterAddress);
      const amount = parseAmount("amount", input.amount);
      if (caller !== staker) {
        throw new WalletError("permission_denied", "only the staker may lock its own money");
      }
      const { stake, entry } = await committer.submit({
        type: "lock_stake",
        stakeId,
        staker,
        arbiter,
        amount,
        hash: fingerprint(["lock_stake", staker, arbiter, amount]),
      });
      return { stake: stakeToRecord(stake), transaction: entryToRecord(entry) };
    },

    async unlockStake(caller, input) {
      const stakeId = checkId("stake_id", input.stakeId);
      const reason = checkText("reason", input.reason ?? "");
      const { stake, entry } = await committer.submit({
        type: "unlock_stake",
        caller,
        stakeId,
        reason,
      });
      return {
        stake: stakeToRecord(stake),
        transaction: entry === undefined ? undefined : entryToRecord(entry),
      };
    },

    async slashStake(caller, input) {
      const slashId = checkTransactionId("slash_id", input.slashId);
      const stakeId = checkId("stake_id", input.stakeId);
      const amount = parseAmount("amount", input.amount);
      const beneficiary = checkAddress("beneficiary_address", input.beneficiaryAddress);
      const reason = checkText("reason", input.reason ?? "");
      const { stake, entry } = await committer.submit({
        type: "slash",
        caller,
        slashId,
        stakeId,
        amount,
        beneficiary,
        reason,
        hash: fingerprint(["slash", stakeId, amount, beneficiary, reason]),
      });
      return { stake: stakeToRecord(stake), transaction: entryToRecord(entry) };
    },

    async getStake(stakeId) {
      checkId("stake_id", stakeId);
      const row = await db
        .selectFrom("wallet_stake")
        .selectAll()
        .where("stake_id", "=", stakeId)
        .executeTakeFirst();
      if (row === undefined) throw new WalletError("not_found", `stake ${stakeId} does not exist`);
      return stakeToRecord(stakeFromDb(row));
    },

    async faucet(_caller, input) {
      if (faucet === undefined) {
        throw new WalletError("unimplemented", "the faucet is disabled on this network");
      }
      const transferId = checkTransactionId("transfer_id", input.transferId);
      const address = checkAddress("address", input.address);
      const amount = parseAmount("amount", input.amount);
      if (amount > faucet.perCallLimit) {
        throw new WalletError(
          "resource_exhausted",
          `amount: at most ${faucet.perCallLimit} base units per faucet call`,
          { reason: "faucet_limit" },
        );
      }
      const entry = await committer.submit({
        type: "faucet",
        transferId,
        address,
        amount,
        perDayLimit: faucet.perDayLimit,
        hash: fingerprint(["faucet", address, amount]),
      });
      return entryToRecord(entry);
    },

    async applyGenesis(allocations) {
      const seen = new Set<string>();
      const ops = allocations.map((allocation, index) => {
        const field = `genesis[${index}]`;
        const address = checkAddress(`${field}.address`, allocation.address);
        if (seen.has(address)) throw invalidArgument(`${field}.address`, "is allocated twice");
        seen.add(address);
        const amount =
          typeof allocation.amount === "bigint"
            ? parseAmount(`${field}.amount`, allocation.amount.toString())
            : parseAmount(`${field}.amount`, allocation.amount);
        return { type: "genesis" as const, address, amount };
      });
      await Promise.all(ops.map((op) => committer.submit(op)));
    },

    checkInvariants(invariantOptions) {
      return checkLedgerInvariants(store, invariantOptions);
    },

    close() {
      return committer.close();
    },
  };
}

/** What never changes about an escrow: enough to check a release before queuing it. */
type EscrowTerms = Pick<
  EscrowRow,
  "escrowId" | "jobId" | "arbiterAddress" | "amount" | "treeBase64"
>;

/** Escrows whose terms a ledger keeps in memory. */
const ESCROW_TERMS_CACHE_SIZE = 10_000;

/** The tree of a release that only replays a committed one: it pays nothing. */
const REPLAY_TREE: ParsedPaymentTree = Object.freeze({
  tree: create(PaymentTreeSchema),
  total: 0n,
  payouts: [],
  encoded: "",
});

/**
 * For an escrow that is no longer held: the replay tree when it was released with the same
 * validation (the batch then answers the committed result); otherwise escrow_not_held. Undefined
 * while the escrow is held.
 * @throws WalletError failed_precondition (escrow_not_held)
 */
function settledRelease(escrow: EscrowRow, releaseHash: string): ParsedPaymentTree | undefined {
  if (escrow.state === EscrowState.HELD) return undefined;
  if (escrow.state === EscrowState.RELEASED && escrow.releaseHash === releaseHash) {
    return REPLAY_TREE;
  }
  throw new WalletError(
    "failed_precondition",
    escrow.state === EscrowState.RELEASED
      ? `escrow ${escrow.escrowId} was already released with another completion validation`
      : `escrow ${escrow.escrowId} was refunded`,
    { reason: "escrow_not_held" },
  );
}

/** Longest job id, in characters. */
const MAX_JOB_ID_CHARS = 256;
/** Latest expiry accepted: year 9999 (later Timestamps do not convert to dates safely). */
const MAX_EXPIRY_MS = Date.UTC(9999, 11, 31);

function checkJobId(jobId: string): string {
  if (typeof jobId !== "string" || jobId === "") throw invalidArgument("job_id", "is required");
  if ([...jobId].length > MAX_JOB_ID_CHARS) {
    throw invalidArgument("job_id", `must be at most ${MAX_JOB_ID_CHARS} characters`);
  }
  return jobId;
}

function checkExpiry(expiresAt: Date | undefined): number {
  if (expiresAt === undefined) throw invalidArgument("expires_at", "is required");
  const ms = expiresAt.getTime();
  if (!Number.isFinite(ms) || ms > MAX_EXPIRY_MS) {
    throw invalidArgument("expires_at", "must be a time before the year 10000");
  }
  return ms;
}
