/**
 * The ledger's state changes as pure functions over a batch's {@link WorkingSet}: each checks
 * everything it needs, then posts entries and stores rows, or throws a {@link WalletError} (the
 * committer then rolls the working set back to before the operation). Inputs arrive parsed and
 * statically checked (./ledger.ts); what depends on stored state is decided here.
 *
 * Transaction ids the wallet derives: "escrow:<id>:lock", "escrow:<id>:release:<n>" (n = 0, 1, …
 * over the non-zero payouts in paying order), "escrow:<id>:refund" (a refund, or the remainder of
 * a release), "stake:<id>:lock", "stake:<id>:unlock", "genesis:<address>". Client-chosen ids
 * (transfers, faucet credits, slashes) cannot start with those prefixes (./input.ts).
 */
import {
  EscrowState,
  StakeState,
  TransactionKind,
} from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { WalletError } from "./errors.js";
import type { ParsedPaymentTree } from "./payment-tree.js";
import {
  type EntryRow,
  type EscrowRow,
  escrowAccount,
  FAUCET_ACCOUNT,
  type StakeRow,
  stakeAccount,
} from "./records.js";
import { GENESIS_REFERENCE, type WorkingSet } from "./working-set.js";

/** A signed transfer between two addresses (caller = `from`, checked before). */
export interface TransferOp {
  readonly type: "transfer";
  readonly transferId: string;
  readonly from: string;
  readonly to: string;
  readonly amount: bigint;
  readonly referenceId: string;
  readonly memo: string;
  readonly hash: string;
}

/** A new escrow (caller = payer, checked before). */
export interface CreateEscrowOp {
  readonly type: "create_escrow";
  readonly escrowId: string;
  readonly jobId: string;
  readonly payer: string;
  readonly arbiter: string;
  readonly amount: bigint;
  readonly expiresAtMs: number;
  readonly tree: ParsedPaymentTree | undefined;
  readonly hash: string;
}

/** A release against a completion validation that was verified before. */
export interface ReleaseOp {
  readonly type: "release";
  readonly caller: string;
  readonly escrowId: string;
  /** The validated payment tree to pay (equal to the escrow's when it has one). */
  readonly tree: ParsedPaymentTree;
  /** Fingerprint of the validation: releasing again with the same one returns the same result. */
  readonly releaseHash: string;
}

/** A refund by the arbiter, or by the payer after expiry. */
export interface RefundOp {
  readonly type: "refund";
  readonly caller: string;
  readonly escrowId: string;
  readonly reason: string;
}

/** A new stake (caller = staker, checked before). */
export interface LockStakeOp {
  readonly type: "lock_stake";
  readonly stakeId: string;
  readonly staker: string;
  readonly arbiter: string;
  readonly amount: bigint;
  readonly hash: string;
}

/** Returning a stake by its arbiter. */
export interface UnlockStakeOp {
  readonly type: "unlock_stake";
  readonly caller: string;
  readonly stakeId: string;
  readonly reason: string;
}

/** A penalty taken from a stake by its arbiter. */
export interface SlashOp {
  readonly type: "slash";
  readonly caller: string;
  readonly slashId: string;
  readonly stakeId: string;
  readonly amount: bigint;
  readonly beneficiary: string;
  readonly reason: string;
  readonly hash: string;
}

/** Development money from the faucet account. */
export interface FaucetOp {
  readonly type: "faucet";
  readonly transferId: string;
  readonly address: string;
  readonly amount: bigint;
  /** Most an address may receive per UTC day. */
  readonly perDayLimit: bigint;
  readonly hash: string;
}

/** A genesis allocation from config. */
export interface GenesisOp {
  readonly type: "genesis";
  readonly address: string;
  readonly amount: bigint;
}

/** Every state change of the ledger. */
export type Operation =
  | TransferOp
  | CreateEscrowOp
  | ReleaseOp
  | RefundOp
  | LockStakeOp
  | UnlockStakeOp
  | SlashOp
  | FaucetOp
  | GenesisOp;

/** An escrow and the entry that created or settled it. */
export interface EscrowWithEntry {
  readonly escrow: EscrowRow;
  readonly entry: EntryRow;
}

/** A released escrow and its payouts (and remainder refund). */
export interface EscrowWithEntries {
  readonly escrow: EscrowRow;
  readonly entries: readonly EntryRow[];
}

/** A stake and the entry that changed it (absent for an unlock that moved nothing). */
export interface StakeWithEntry<E extends EntryRow | undefined = EntryRow> {
  readonly stake: StakeRow;
  readonly entry: E;
}

/** What each operation returns. */
export interface OperationResults {
  transfer: EntryRow;
  create_escrow: EscrowWithEntry;
  release: EscrowWithEntries;
  refund: EscrowWithEntry;
  lock_stake: StakeWithEntry;
  unlock_stake: StakeWithEntry<EntryRow | undefined>;
  slash: StakeWithEntry;
  faucet: EntryRow;
  genesis: EntryRow;
}

/** The result type of `op`. */
export type ResultOf<O extends Operation> = OperationResults[O["type"]];

/** The rows an operation reads, before its accounts are known. */
export interface RowNeeds {
  readonly escrowIds: string[];
  readonly stakeIds: string[];
  readonly entryIds: string[];
  readonly faucetAddresses: string[];
}

/** Adds the rows `op` reads to `needs`. */
export function collectRowNeeds(op: Operation, needs: RowNeeds): void {
  switch (op.type) {
    case "transfer":
      needs.entryIds.push(op.transferId);
      return;
    case "faucet":
      needs.entryIds.push(op.transferId);
      needs.faucetAddresses.push(op.address);
      return;
    case "genesis":
      needs.entryIds.push(genesisId(op.address));
      return;
    case "create_escrow":
      needs.escrowIds.push(op.escrowId);
      needs.entryIds.push(escrowLockId(op.escrowId));
      return;
    case "release":
      needs.escrowIds.push(op.escrowId);
      return;
    case "refund":
      needs.escrowIds.push(op.escrowId);
      needs.entryIds.push(escrowRefundId(op.escrowId));
      return;
    case "lock_stake":
      needs.stakeIds.push(op.stakeId);
      needs.entryIds.push(stakeLockId(op.stakeId));
      return;
    case "unlock_stake":
      needs.stakeIds.push(op.stakeId);
      needs.entryIds.push(stakeUnlockId(op.stakeId));
      return;
    case "slash":
      needs.stakeIds.push(op.stakeId);
      needs.entryIds.push(op.slashId);
      return;
  }
}

/** What the batch knows of its escrows and stakes when it decides which accounts to load. */
export interface KnownOwners {
  /** Payers of the escrows, loaded or created by an operation of the batch. */
  readonly payers: (escrowId: string) => readonly string[];
  /** Stakers of the stakes, loaded or created by an operation of the batch. */
  readonly stakers: (stakeId: string) => readonly string[];
}

/** The accounts `op` may move money through. */
export function accountsOf(op: Operation, owners: KnownOwners): string[] {
  switch (op.type) {
    case "transfer":
      return [op.from, op.to];
    case "faucet":
    case "genesis":
      return [FAUCET_ACCOUNT, op.address];
    case "create_escrow":
      return [op.payer, escrowAccount(op.escrowId)];
    case "release":
      return [
        escrowAccount(op.escrowId),
        ...owners.payers(op.escrowId),
        ...op.tree.payouts.map((payout) => payout.address),
      ];
    case "refund":
      return [escrowAccount(op.escrowId), ...owners.payers(op.escrowId)];
    case "lock_stake":
      return [op.staker, stakeAccount(op.stakeId)];
    case "unlock_stake":
      return [stakeAccount(op.stakeId), ...owners.stakers(op.stakeId)];
    case "slash":
      return [stakeAccount(op.stakeId), op.beneficiary];
  }
}

/** Runs `op` against `ws`. @throws WalletError when the operation is refused. */
export function applyOperation<O extends Operation>(ws: WorkingSet, op: O): ResultOf<O> {
  // Each branch returns the result type of its own operation; TypeScript cannot narrow O itself.
  switch (op.type) {
    case "transfer":
      return applyTransfer(ws, op) as ResultOf<O>;
    case "faucet":
      return applyFaucet(ws, op) as ResultOf<O>;
    case "genesis":
      return applyGenesis(ws, op) as ResultOf<O>;
    case "create_escrow":
      return applyCreateEscrow(ws, op) as ResultOf<O>;
    case "release":
      return applyRelease(ws, op) as ResultOf<O>;
    case "refund":
      return applyRefund(ws, op) as ResultOf<O>;
    case "lock_stake":
      return applyLockStake(ws, op) as ResultOf<O>;
    case "unlock_stake":
      return applyUnlockStake(ws, op) as ResultOf<O>;
    case "slash":
      return applySlash(ws, op) as ResultOf<O>;
  }
  throw new Error("bug: unknown operation");
}

function applyTransfer(ws: WorkingSet, op: TransferOp): EntryRow {
  const existing = ws.entry(op.transferId);
  if (existing !== undefined) {
    return sameRequest(existing, TransactionKind.TRANSFER, op.hash, "transfer_id", op.transferId);
  }
  const entry: EntryRow = {
    transactionId: op.transferId,
    kind: TransactionKind.TRANSFER,
    debitAccount: op.from,
    creditAccount: op.to,
    amount: op.amount,
    referenceId: op.referenceId,
    memo: op.memo,
    createdAtMs: ws.nowMs,
    requestHash: op.hash,
  };
  ws.post(entry);
  return entry;
}

function applyFaucet(ws: WorkingSet, op: FaucetOp): EntryRow {
  const existing = ws.entry(op.transferId);
  if (existing !== undefined) {
    return sameRequest(existing, TransactionKind.FAUCET, op.hash, "transfer_id", op.transferId);
  }
  const today = ws.faucetToday(op.address);
  if (today + op.amount > op.perDayLimit) {
    throw new WalletError(
      "resource_exhausted",
      `faucet limit: ${op.address} received ${today} today (UTC); at most ${op.perDayLimit} a day`,
      { reason: "faucet_limit" },
    );
  }
  const entry: EntryRow = {
    transactionId: op.transferId,
    kind: TransactionKind.FAUCET,
    debitAccount: FAUCET_ACCOUNT,
    creditAccount: op.address,
    amount: op.amount,
    referenceId: "",
    memo: "",
    createdAtMs: ws.nowMs,
    requestHash: op.hash,
  };
  ws.post(entry);
  return entry;
}

function applyGenesis(ws: WorkingSet, op: GenesisOp): EntryRow {
  const id = genesisId(op.address);
  const existing = ws.entry(id);
  if (existing !== undefined) {
    if (existing.amount !== op.amount || existing.creditAccount !== op.address) {
      throw new WalletError(
        "failed_precondition",
        `the genesis allocation of ${op.address} is ${existing.amount} in the ledger, the configuration says ${op.amount}; genesis cannot change`,
      );
    }
    return existing;
  }
  const entry: EntryRow = {
    transactionId: id,
    kind: TransactionKind.FAUCET,
    debitAccount: FAUCET_ACCOUNT,
    creditAccount: op.address,
    amount: op.amount,
    referenceId: GENESIS_REFERENCE,
    memo: "genesis allocation",
    createdAtMs: ws.nowMs,
    requestHash: null,
  };
  ws.post(entry);
  return entry;
}

function applyCreateEscrow(ws: WorkingSet, op: CreateEscrowOp): EscrowWithEntry {
  const existing = ws.escrow(op.escrowId);
  if (existing !== undefined) {
    if (existing.requestHash !== op.hash) {
      throw new WalletError(
        "already_exists",
        `escrow ${op.escrowId} already exists with a different request`,
      );
    }
    return { escrow: existing, entry: requireEntry(ws, escrowLockId(op.escrowId)) };
  }
  if (op.expiresAtMs <= ws.nowMs) {
    throw new WalletError("invalid_argument", "expires_at: must be in the future");
  }
  const entry: EntryRow = {
    transactionId: escrowLockId(op.escrowId),
    kind: TransactionKind.ESCROW_LOCK,
    debitAccount: op.payer,
    creditAccount: escrowAccount(op.escrowId),
    amount: op.amount,
    referenceId: op.escrowId,
    memo: "",
    createdAtMs: ws.nowMs,
    requestHash: null,
  };
  ws.post(entry);
  const escrow: EscrowRow = {
    escrowId: op.escrowId,
    jobId: op.jobId,
    payerAddress: op.payer,
    arbiterAddress: op.arbiter,
    amount: op.amount,
    expiresAtMs: op.expiresAtMs,
    state: EscrowState.HELD,
    treeBase64: op.tree?.encoded,
    createdAtMs: ws.nowMs,
    settledAtMs: undefined,
    releasedAmount: 0n,
    refundedAmount: 0n,
    requestHash: op.hash,
    releaseHash: undefined,
  };
  ws.putEscrow(escrow);
  return { escrow, entry };
}

function applyRelease(ws: WorkingSet, op: ReleaseOp): EscrowWithEntries {
  const escrow = requireEscrow(ws, op.escrowId);
  if (op.caller !== escrow.arbiterAddress) {
    throw new WalletError(
      "permission_denied",
      `only the arbiter of escrow ${op.escrowId} may release it`,
    );
  }
  if (escrow.state === EscrowState.RELEASED) {
    if (escrow.releaseHash === op.releaseHash) {
      return { escrow, entries: ws.entriesDebiting(escrowAccount(op.escrowId)) };
    }
    throw new WalletError(
      "failed_precondition",
      `escrow ${op.escrowId} was already released with another completion validation`,
      { reason: "escrow_not_held" },
    );
  }
  if (escrow.state !== EscrowState.HELD) {
    throw new WalletError("failed_precondition", `escrow ${op.escrowId} was refunded`, {
      reason: "escrow_not_held",
    });
  }
  // Checked against the escrow when the validation was verified; checked again here because the
  // escrow may have been created by this same batch.
  const problem = releaseTreeProblem(escrow, op.tree);
  if (problem !== undefined) {
    throw new WalletError("failed_precondition", problem, { reason: "invalid_validation" });
  }
  const account = escrowAccount(op.escrowId);
  const entries: EntryRow[] = op.tree.payouts.map((payout, index) => ({
    transactionId: `${account}:release:${index}`,
    kind: TransactionKind.ESCROW_RELEASE,
    debitAccount: account,
    creditAccount: payout.address,
    amount: payout.amount,
    referenceId: op.escrowId,
    memo: "",
    createdAtMs: ws.nowMs,
    requestHash: null,
  }));
  const remainder = escrow.amount - op.tree.total;
  if (remainder > 0n) {
    entries.push({
      transactionId: escrowRefundId(op.escrowId),
      kind: TransactionKind.ESCROW_REFUND,
      debitAccount: account,
      creditAccount: escrow.payerAddress,
      amount: remainder,
      referenceId: op.escrowId,
      memo: "remainder of the release",
      createdAtMs: ws.nowMs,
      requestHash: null,
    });
  }
  for (const entry of entries) ws.post(entry);
  const released: EscrowRow = {
    ...escrow,
    state: EscrowState.RELEASED,
    settledAtMs: ws.nowMs,
    releasedAmount: op.tree.total,
    refundedAmount: remainder,
    releaseHash: op.releaseHash,
  };
  ws.putEscrow(released);
  return { escrow: released, entries };
}

/**
 * Why `tree` may not pay out `escrow`, or undefined: it must be the escrow's tree (the same
 * binary encoding) when the escrow has one, and add up to at most the escrow's amount.
 */
export function releaseTreeProblem(
  escrow: Pick<EscrowRow, "escrowId" | "amount" | "treeBase64">,
  tree: ParsedPaymentTree,
): string | undefined {
  if (escrow.treeBase64 !== undefined && escrow.treeBase64 !== tree.encoded) {
    return `the validation's payment tree differs from escrow ${escrow.escrowId}'s`;
  }
  if (tree.total > escrow.amount) {
    return `the validation's payment tree adds up to ${tree.total}, more than the ${escrow.amount} held`;
  }
  return undefined;
}

function applyRefund(ws: WorkingSet, op: RefundOp): EscrowWithEntry {
  const escrow = requireEscrow(ws, op.escrowId);
  const isArbiter = op.caller === escrow.arbiterAddress;
  if (!isArbiter && op.caller !== escrow.payerAddress) {
    throw new WalletError(
      "permission_denied",
      `only the arbiter or the payer of escrow ${op.escrowId} may refund it`,
    );
  }
  if (escrow.state === EscrowState.REFUNDED) {
    return { escrow, entry: requireEntry(ws, escrowRefundId(op.escrowId)) };
  }
  if (escrow.state !== EscrowState.HELD) {
    throw new WalletError("failed_precondition", `escrow ${op.escrowId} was released`, {
      reason: "escrow_not_held",
    });
  }
  if (!isArbiter && ws.nowMs < escrow.expiresAtMs) {
    throw new WalletError(
      "failed_precondition",
      `escrow ${op.escrowId} expires at ${new Date(escrow.expiresAtMs).toISOString()}; the payer may refund it only after that`,
      { reason: "not_expired" },
    );
  }
  const entry: EntryRow = {
    transactionId: escrowRefundId(op.escrowId),
    kind: TransactionKind.ESCROW_REFUND,
    debitAccount: escrowAccount(op.escrowId),
    creditAccount: escrow.payerAddress,
    amount: escrow.amount,
    referenceId: op.escrowId,
    memo: op.reason,
    createdAtMs: ws.nowMs,
    requestHash: null,
  };
  ws.post(entry);
  const refunded: EscrowRow = {
    ...escrow,
    state: EscrowState.REFUNDED,
    settledAtMs: ws.nowMs,
    refundedAmount: escrow.amount,
  };
  ws.putEscrow(refunded);
  return { escrow: refunded, entry };
}

function applyLockStake(ws: WorkingSet, op: LockStakeOp): StakeWithEntry {
  const existing = ws.stake(op.stakeId);
  if (existing !== undefined) {
    if (existing.requestHash !== op.hash) {
      throw new WalletError(
        "already_exists",
        `stake ${op.stakeId} already exists with a different request`,
      );
    }
    return { stake: existing, entry: requireEntry(ws, stakeLockId(op.stakeId)) };
  }
  const entry: EntryRow = {
    transactionId: stakeLockId(op.stakeId),
    kind: TransactionKind.STAKE_LOCK,
    debitAccount: op.staker,
    creditAccount: stakeAccount(op.stakeId),
    amount: op.amount,
    referenceId: op.stakeId,
    memo: "",
    createdAtMs: ws.nowMs,
    requestHash: null,
  };
  ws.post(entry);
  const stake: StakeRow = {
    stakeId: op.stakeId,
    stakerAddress: op.staker,
    arbiterAddress: op.arbiter,
    amount: op.amount,
    slashedAmount: 0n,
    state: StakeState.LOCKED,
    createdAtMs: ws.nowMs,
    updatedAtMs: ws.nowMs,
    requestHash: op.hash,
  };
  ws.putStake(stake);
  return { stake, entry };
}

function applyUnlockStake(ws: WorkingSet, op: UnlockStakeOp): StakeWithEntry<EntryRow | undefined> {
  const stake = requireStakeOfArbiter(ws, op.stakeId, op.caller, "unlock");
  if (stake.state === StakeState.UNLOCKED) {
    return { stake, entry: ws.entry(stakeUnlockId(op.stakeId)) };
  }
  if (stake.state !== StakeState.LOCKED) {
    throw new WalletError("failed_precondition", `stake ${op.stakeId} was slashed to zero`, {
      reason: "stake_not_locked",
    });
  }
  let entry: EntryRow | undefined;
  if (stake.amount > 0n) {
    entry = {
      transactionId: stakeUnlockId(op.stakeId),
      kind: TransactionKind.STAKE_UNLOCK,
      debitAccount: stakeAccount(op.stakeId),
      creditAccount: stake.stakerAddress,
      amount: stake.amount,
      referenceId: op.stakeId,
      memo: op.reason,
      createdAtMs: ws.nowMs,
      requestHash: null,
    };
    ws.post(entry);
  }
  const unlocked: StakeRow = {
    ...stake,
    amount: 0n,
    state: StakeState.UNLOCKED,
    updatedAtMs: ws.nowMs,
  };
  ws.putStake(unlocked);
  return { stake: unlocked, entry };
}

function applySlash(ws: WorkingSet, op: SlashOp): StakeWithEntry {
  const stake = requireStakeOfArbiter(ws, op.stakeId, op.caller, "slash");
  const existing = ws.entry(op.slashId);
  if (existing !== undefined) {
    return {
      stake,
      entry: sameRequest(existing, TransactionKind.STAKE_SLASH, op.hash, "slash_id", op.slashId),
    };
  }
  if (stake.state !== StakeState.LOCKED) {
    throw new WalletError(
      "failed_precondition",
      `stake ${op.stakeId} is ${stake.state === StakeState.UNLOCKED ? "unlocked" : "slashed to zero"}`,
      { reason: "stake_not_locked" },
    );
  }
  // More than remains is lowered to what remains (Math.min does not take bigints).
  // biome-ignore lint/complexity/useMathMinMax: bigint operands
  const taken = stake.amount > op.amount ? op.amount : stake.amount;
  const entry: EntryRow = {
    transactionId: op.slashId,
    kind: TransactionKind.STAKE_SLASH,
    debitAccount: stakeAccount(op.stakeId),
    creditAccount: op.beneficiary,
    amount: taken,
    referenceId: op.stakeId,
    memo: op.reason,
    createdAtMs: ws.nowMs,
    requestHash: op.hash,
  };
  ws.post(entry);
  const remaining = stake.amount - taken;
  const slashed: StakeRow = {
    ...stake,
    amount: remaining,
    slashedAmount: stake.slashedAmount + taken,
    state: remaining === 0n ? StakeState.SLASHED : StakeState.LOCKED,
    updatedAtMs: ws.nowMs,
  };
  ws.putStake(slashed);
  return { stake: slashed, entry };
}

/** The existing entry when `hash` matches its request; ALREADY_EXISTS otherwise. */
function sameRequest(
  existing: EntryRow,
  kind: TransactionKind,
  hash: string,
  field: string,
  id: string,
): EntryRow {
  if (existing.kind !== kind || existing.requestHash !== hash) {
    throw new WalletError(
      "already_exists",
      `${field} ${id} was already used for a different request`,
    );
  }
  return existing;
}

function requireEscrow(ws: WorkingSet, escrowId: string): EscrowRow {
  const escrow = ws.escrow(escrowId);
  if (escrow === undefined) throw new WalletError("not_found", `escrow ${escrowId} does not exist`);
  return escrow;
}

function requireStakeOfArbiter(
  ws: WorkingSet,
  stakeId: string,
  caller: string,
  verb: string,
): StakeRow {
  const stake = ws.stake(stakeId);
  if (stake === undefined) throw new WalletError("not_found", `stake ${stakeId} does not exist`);
  if (caller !== stake.arbiterAddress) {
    throw new WalletError(
      "permission_denied",
      `only the arbiter of stake ${stakeId} may ${verb} it`,
    );
  }
  return stake;
}

function requireEntry(ws: WorkingSet, transactionId: string): EntryRow {
  const entry = ws.entry(transactionId);
  if (entry === undefined) throw new Error(`bug: ledger entry ${transactionId} is missing`);
  return entry;
}

export function escrowLockId(escrowId: string): string {
  return `${escrowAccount(escrowId)}:lock`;
}

export function escrowRefundId(escrowId: string): string {
  return `${escrowAccount(escrowId)}:refund`;
}

export function stakeLockId(stakeId: string): string {
  return `${stakeAccount(stakeId)}:lock`;
}

export function stakeUnlockId(stakeId: string): string {
  return `${stakeAccount(stakeId)}:unlock`;
}

export function genesisId(address: string): string {
  return `genesis:${address}`;
}
