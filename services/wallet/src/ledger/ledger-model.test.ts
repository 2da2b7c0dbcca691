/**
 * Model-based test: random sequences of ledger operations (seeded PRNG) run against the real
 * ledger and against a small in-memory model written independently of it. After every step:
 * no negative balance, debits equal credits, escrowed money equals the open escrows (the ledger's
 * own invariant check), and the ledger agrees with the model on every balance, escrow, stake and
 * on the outcome of every call (which error, or what it moved).
 *
 * Some steps send several calls at once without waiting (they then share a batch of the ledger's
 * group commit), and the model applies them in call order, as the ledger promises.
 *
 * Replay: the seed is printed on failure; TESSERA_WALLET_SEED=<seed> runs the same sequences.
 * TESSERA_WALLET_SEQUENCES sets how many sequences run per store (default 1000).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { toBinary } from "@bufbuild/protobuf";
import { isAddress } from "@tessera/identity/address";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import {
  type CompletionValidation,
  CompletionValidationSchema,
  type PaymentTree,
  PaymentTreeSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  EscrowState,
  StakeState,
  TransactionKind,
  type TransactionRecord,
} from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { fromMoney, type Store } from "@tessera/store";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import { WalletError } from "./errors.js";
import { createLedger, type Ledger } from "./ledger.js";
import {
  completionValidation,
  createFakeClock,
  createTestValidators,
  type FakeClock,
  openWalletStore,
  paymentTree,
  type WalletDb,
} from "./test-fixtures.js";

const SEQUENCES = Number(process.env.TESSERA_WALLET_SEQUENCES ?? 1000);
const SEED = process.env.TESSERA_WALLET_SEED ?? String(Date.now() % 1_000_000_007);
/** Sequences per database: a fresh one now and then keeps the per-step checks cheap. */
const SEQUENCES_PER_SPACE = 20;
const MAX_STEPS = 24;
const MAX_AMOUNT = 2n ** 64n - 1n;
const TICK_MS = 20 * 60_000;
const DAY_MS = 86_400_000;
const FAUCET_PER_CALL = 5_000n;
const FAUCET_PER_DAY = 12_000n;

// ---------------------------------------------------------------------------------------------
// PRNG

/** mulberry32: small, fast, good enough to pick test cases; seeded per sequence. */
function createRandom(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    int,
    chance: (p: number) => next() < p,
    pick<T>(items: readonly T[]): T {
      if (items.length === 0) throw new Error("pick from nothing");
      return items[int(items.length)] as T;
    },
  };
}
type Random = ReturnType<typeof createRandom>;

function sequenceSeed(seed: string, index: number): number {
  let h = 2166136261;
  for (const ch of `${seed}/${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// The model

type Outcome = { ok: true; summary: string } | { ok: false; error: string };

interface ModelEscrow {
  id: string;
  jobId: string;
  payer: string;
  arbiter: string;
  amount: bigint;
  expiresAtMs: number;
  tree: PaymentTree | undefined;
  state: EscrowState;
  released: bigint;
  refunded: bigint;
  requestKey: string;
  releaseKey: string | undefined;
  lockSummary: string;
  settleSummary: string;
}

interface ModelStake {
  id: string;
  staker: string;
  arbiter: string;
  amount: bigint;
  slashed: bigint;
  state: StakeState;
  requestKey: string;
  /** The amount the stake was locked with. */
  requested: string;
  lockSummary: string;
  unlockSummary: string;
}

interface ModelEntry {
  kind: TransactionKind;
  key: string;
  summary: string;
}

class Model {
  readonly balances = new Map<string, bigint>();
  readonly escrows = new Map<string, ModelEscrow>();
  readonly stakes = new Map<string, ModelStake>();
  readonly entries = new Map<string, ModelEntry>();
  readonly faucetByDay = new Map<string, bigint>();
  nowMs: number;

  constructor(
    nowMs: number,
    readonly validators: readonly string[],
    readonly quorum: number,
  ) {
    this.nowMs = nowMs;
  }

  balance(address: string): bigint {
    return this.balances.get(address) ?? 0n;
  }

  move(from: string | undefined, to: string, amount: bigint): void {
    if (from !== undefined) this.balances.set(from, this.balance(from) - amount);
    this.balances.set(to, this.balance(to) + amount);
  }

  transfer(caller: string, id: string, from: string, to: string, amountText: string): Outcome {
    const problem =
      txIdProblem(id) ??
      addressProblem(from) ??
      addressProblem(to) ??
      amountProblem(amountText) ??
      (from === to ? "invalid_argument" : undefined) ??
      (caller !== from ? "permission_denied" : undefined);
    if (problem !== undefined) return fail(problem);
    const amount = BigInt(amountText);
    const key = `transfer|${from}|${to}|${amount}`;
    const existing = this.entries.get(id);
    if (existing !== undefined) {
      return existing.key === key ? ok(existing.summary) : fail("already_exists");
    }
    if (this.balance(from) < amount) return fail("failed_precondition/insufficient_funds");
    this.move(from, to, amount);
    const summary = entrySummary(id, TransactionKind.TRANSFER, from, to, amount);
    this.entries.set(id, { kind: TransactionKind.TRANSFER, key, summary });
    return ok(summary);
  }

  faucet(id: string, address: string, amountText: string): Outcome {
    const problem = txIdProblem(id) ?? addressProblem(address) ?? amountProblem(amountText);
    if (problem !== undefined) return fail(problem);
    const amount = BigInt(amountText);
    if (amount > FAUCET_PER_CALL) return fail("resource_exhausted/faucet_limit");
    const key = `faucet|${address}|${amount}`;
    const existing = this.entries.get(id);
    if (existing !== undefined) {
      return existing.key === key ? ok(existing.summary) : fail("already_exists");
    }
    const dayKey = `${Math.floor(this.nowMs / DAY_MS)}|${address}`;
    const today = this.faucetByDay.get(dayKey) ?? 0n;
    if (today + amount > FAUCET_PER_DAY) return fail("resource_exhausted/faucet_limit");
    this.faucetByDay.set(dayKey, today + amount);
    this.move(undefined, address, amount);
    const summary = entrySummary(id, TransactionKind.FAUCET, "faucet", address, amount);
    this.entries.set(id, { kind: TransactionKind.FAUCET, key, summary });
    return ok(summary);
  }

  createEscrow(caller: string, e: EscrowRequest): Outcome {
    const problem =
      idProblem(e.escrowId) ??
      addressProblem(e.payer) ??
      addressProblem(e.arbiter) ??
      amountProblem(e.amount) ??
      (e.tree === undefined ? undefined : treeProblem(e.tree)) ??
      (e.tree !== undefined && treeTotal(e.tree) > BigInt(e.amount)
        ? "invalid_argument"
        : undefined) ??
      (caller !== e.payer ? "permission_denied" : undefined);
    if (problem !== undefined) return fail(problem);
    const amount = BigInt(e.amount);
    const treeKey =
      e.tree === undefined
        ? "none"
        : Buffer.from(toBinary(PaymentTreeSchema, e.tree)).toString("hex");
    const key = `${e.jobId}|${e.payer}|${e.arbiter}|${amount}|${e.expiresAtMs}|${treeKey}`;
    const existing = this.escrows.get(e.escrowId);
    if (existing !== undefined) {
      return existing.requestKey === key ? ok(`${existing.lockSummary}`) : fail("already_exists");
    }
    if (e.expiresAtMs <= this.nowMs) return fail("invalid_argument");
    if (this.balance(e.payer) < amount) return fail("failed_precondition/insufficient_funds");
    const account = `escrow:${e.escrowId}`;
    this.move(e.payer, account, amount);
    const lockSummary = entrySummary(
      `${account}:lock`,
      TransactionKind.ESCROW_LOCK,
      e.payer,
      account,
      amount,
    );
    this.escrows.set(e.escrowId, {
      id: e.escrowId,
      jobId: e.jobId,
      payer: e.payer,
      arbiter: e.arbiter,
      amount,
      expiresAtMs: e.expiresAtMs,
      tree: e.tree,
      state: EscrowState.HELD,
      released: 0n,
      refunded: 0n,
      requestKey: key,
      releaseKey: undefined,
      lockSummary,
      settleSummary: "",
    });
    return ok(lockSummary);
  }

  release(caller: string, escrowId: string, v: ValidationCase): Outcome {
    const escrow = this.escrows.get(escrowId);
    if (escrow === undefined) return fail("not_found");
    if (caller !== escrow.arbiter) return fail("permission_denied");
    const releaseKey = Buffer.from(toBinary(CompletionValidationSchema, v.validation)).toString(
      "hex",
    );
    if (escrow.state === EscrowState.RELEASED && escrow.releaseKey === releaseKey) {
      return ok(escrow.settleSummary);
    }
    if (escrow.state !== EscrowState.HELD) return fail("failed_precondition/escrow_not_held");
    const tree = v.tree;
    const valid =
      v.requestId === escrow.jobId &&
      v.approved &&
      treeProblem(tree) === undefined &&
      (escrow.tree === undefined || sameTree(escrow.tree, tree)) &&
      treeTotal(tree) <= escrow.amount &&
      !v.stranger &&
      !v.tampered &&
      v.signers >= this.quorum;
    if (!valid) return fail("failed_precondition/invalid_validation");
    const account = `escrow:${escrowId}`;
    const lines: string[] = [];
    let index = 0;
    for (const [to, amount] of modelPayouts(tree)) {
      this.move(account, to, amount);
      lines.push(
        entrySummary(
          `${account}:release:${index}`,
          TransactionKind.ESCROW_RELEASE,
          account,
          to,
          amount,
        ),
      );
      index += 1;
    }
    const total = treeTotal(tree);
    const remainder = escrow.amount - total;
    if (remainder > 0n) {
      this.move(account, escrow.payer, remainder);
      lines.push(
        entrySummary(
          `${account}:refund`,
          TransactionKind.ESCROW_REFUND,
          account,
          escrow.payer,
          remainder,
        ),
      );
    }
    escrow.state = EscrowState.RELEASED;
    escrow.released = total;
    escrow.refunded = remainder;
    escrow.releaseKey = releaseKey;
    escrow.settleSummary = lines.join(";");
    return ok(escrow.settleSummary);
  }

  refund(caller: string, escrowId: string): Outcome {
    const escrow = this.escrows.get(escrowId);
    if (escrow === undefined) return fail("not_found");
    const isArbiter = caller === escrow.arbiter;
    if (!isArbiter && caller !== escrow.payer) return fail("permission_denied");
    if (escrow.state === EscrowState.REFUNDED) return ok(escrow.settleSummary);
    if (escrow.state !== EscrowState.HELD) return fail("failed_precondition/escrow_not_held");
    if (!isArbiter && this.nowMs < escrow.expiresAtMs)
      return fail("failed_precondition/not_expired");
    const account = `escrow:${escrowId}`;
    this.move(account, escrow.payer, escrow.amount);
    escrow.state = EscrowState.REFUNDED;
    escrow.refunded = escrow.amount;
    escrow.settleSummary = entrySummary(
      `${account}:refund`,
      TransactionKind.ESCROW_REFUND,
      account,
      escrow.payer,
      escrow.amount,
    );
    return ok(escrow.settleSummary);
  }

  lockStake(
    caller: string,
    id: string,
    staker: string,
    amountText: string,
    arbiter: string,
  ): Outcome {
    const problem =
      idProblem(id) ??
      addressProblem(staker) ??
      addressProblem(arbiter) ??
      amountProblem(amountText) ??
      (caller !== staker ? "permission_denied" : undefined);
    if (problem !== undefined) return fail(problem);
    const amount = BigInt(amountText);
    const key = `${staker}|${arbiter}|${amount}`;
    const existing = this.stakes.get(id);
    if (existing !== undefined) {
      return existing.requestKey === key ? ok(existing.lockSummary) : fail("already_exists");
    }
    if (this.balance(staker) < amount) return fail("failed_precondition/insufficient_funds");
    const account = `stake:${id}`;
    this.move(staker, account, amount);
    const lockSummary = entrySummary(
      `${account}:lock`,
      TransactionKind.STAKE_LOCK,
      staker,
      account,
      amount,
    );
    this.stakes.set(id, {
      id,
      staker,
      arbiter,
      amount,
      slashed: 0n,
      state: StakeState.LOCKED,
      requestKey: key,
      requested: amountText,
      lockSummary,
      unlockSummary: "",
    });
    return ok(lockSummary);
  }

  unlockStake(caller: string, id: string): Outcome {
    const stake = this.stakes.get(id);
    if (stake === undefined) return fail("not_found");
    if (caller !== stake.arbiter) return fail("permission_denied");
    if (stake.state === StakeState.UNLOCKED) return ok(stake.unlockSummary);
    if (stake.state !== StakeState.LOCKED) return fail("failed_precondition/stake_not_locked");
    const account = `stake:${id}`;
    this.move(account, stake.staker, stake.amount);
    stake.unlockSummary = entrySummary(
      `${account}:unlock`,
      TransactionKind.STAKE_UNLOCK,
      account,
      stake.staker,
      stake.amount,
    );
    stake.amount = 0n;
    stake.state = StakeState.UNLOCKED;
    return ok(stake.unlockSummary);
  }

  slash(
    caller: string,
    slashId: string,
    stakeId: string,
    amountText: string,
    beneficiary: string,
  ): Outcome {
    const problem =
      txIdProblem(slashId) ??
      idProblem(stakeId) ??
      amountProblem(amountText) ??
      addressProblem(beneficiary);
    if (problem !== undefined) return fail(problem);
    const stake = this.stakes.get(stakeId);
    if (stake === undefined) return fail("not_found");
    if (caller !== stake.arbiter) return fail("permission_denied");
    const amount = BigInt(amountText);
    const key = `slash|${stakeId}|${amount}|${beneficiary}`;
    const existing = this.entries.get(slashId);
    if (existing !== undefined) {
      return existing.key === key ? ok(existing.summary) : fail("already_exists");
    }
    if (stake.state !== StakeState.LOCKED) return fail("failed_precondition/stake_not_locked");
    const taken = amount < stake.amount ? amount : stake.amount;
    const account = `stake:${stakeId}`;
    this.move(account, beneficiary, taken);
    stake.amount -= taken;
    stake.slashed += taken;
    if (stake.amount === 0n) stake.state = StakeState.SLASHED;
    const summary = entrySummary(slashId, TransactionKind.STAKE_SLASH, account, beneficiary, taken);
    this.entries.set(slashId, { kind: TransactionKind.STAKE_SLASH, key, summary });
    return ok(summary);
  }
}

function ok(summary: string): Outcome {
  return { ok: true, summary };
}

function fail(error: string): Outcome {
  return { ok: false, error };
}

function entrySummary(
  id: string,
  kind: TransactionKind,
  debit: string,
  credit: string,
  amount: bigint,
): string {
  return `${id}:${kind}:${debit}>${credit}:${amount}`;
}

function recordSummary(record: TransactionRecord): string {
  return entrySummary(
    record.transactionId,
    record.kind,
    record.debitAccount,
    record.creditAccount,
    BigInt(record.amount),
  );
}

function idProblem(id: string): string | undefined {
  return /^[A-Za-z0-9._:-]{1,128}$/.test(id) ? undefined : "invalid_argument";
}

function txIdProblem(id: string): string | undefined {
  return idProblem(id) ?? (/^(escrow|stake|genesis):/.test(id) ? "invalid_argument" : undefined);
}

function addressProblem(address: string): string | undefined {
  return isAddress(address) ? undefined : "invalid_argument";
}

function amountProblem(text: string): string | undefined {
  if (!/^[1-9][0-9]*$/.test(text)) return "invalid_argument";
  return BigInt(text) > MAX_AMOUNT ? "invalid_argument" : undefined;
}

function shareOk(text: string): boolean {
  return /^(0|[1-9][0-9]*)$/.test(text) && BigInt(text) <= MAX_AMOUNT;
}

function treeProblem(tree: PaymentTree): string | undefined {
  const shares = [
    tree.computeAmount,
    tree.gatewayAmount,
    tree.validatorAmount,
    tree.treasuryAmount,
  ];
  if (!shares.every(shareOk)) return "invalid_argument";
  const needs: Array<[string, string]> = [
    [tree.computeAmount, tree.computeAddress],
    [tree.gatewayAmount, tree.gatewayAddress],
    [tree.treasuryAmount, tree.treasuryAddress],
  ];
  for (const [share, address] of needs) {
    if (address === "" ? share !== "0" : !isAddress(address)) return "invalid_argument";
  }
  if (tree.validatorAmount !== "0" && tree.validatorAddresses.length === 0)
    return "invalid_argument";
  if (new Set(tree.validatorAddresses).size !== tree.validatorAddresses.length)
    return "invalid_argument";
  return undefined;
}

function treeTotal(tree: PaymentTree): bigint {
  return (
    BigInt(tree.computeAmount) +
    BigInt(tree.gatewayAmount) +
    BigInt(tree.validatorAmount) +
    BigInt(tree.treasuryAmount)
  );
}

function sameTree(a: PaymentTree, b: PaymentTree): boolean {
  return Buffer.from(toBinary(PaymentTreeSchema, a)).equals(
    Buffer.from(toBinary(PaymentTreeSchema, b)),
  );
}

/** The payouts by the remainder rule, written out long-hand: one unit at a time, round-robin. */
function modelPayouts(tree: PaymentTree): Array<[string, bigint]> {
  const out: Array<[string, bigint]> = [];
  if (tree.computeAmount !== "0") out.push([tree.computeAddress, BigInt(tree.computeAmount)]);
  if (tree.gatewayAmount !== "0") out.push([tree.gatewayAddress, BigInt(tree.gatewayAmount)]);
  const count = tree.validatorAddresses.length;
  if (count > 0) {
    const shares = tree.validatorAddresses.map(() => 0n);
    const total = BigInt(tree.validatorAmount);
    const whole = total / BigInt(count);
    for (let i = 0; i < count; i += 1) shares[i] = whole;
    let left = total - whole * BigInt(count);
    for (let i = 0; left > 0n; i += 1, left -= 1n) shares[i] = (shares[i] ?? 0n) + 1n;
    tree.validatorAddresses.forEach((address, i) => {
      const share = shares[i] ?? 0n;
      if (share > 0n) out.push([address, share]);
    });
  }
  if (tree.treasuryAmount !== "0") out.push([tree.treasuryAddress, BigInt(tree.treasuryAmount)]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Generating operations

interface EscrowRequest {
  escrowId: string;
  jobId: string;
  payer: string;
  arbiter: string;
  amount: string;
  expiresAtMs: number;
  tree: PaymentTree | undefined;
}

interface ValidationCase {
  validation: CompletionValidation;
  requestId: string;
  tree: PaymentTree;
  approved: boolean;
  signers: number;
  stranger: boolean;
  tampered: boolean;
}

/** One call: a description for the failure report, the model's answer, and the ledger call. */
interface Call {
  readonly describe: string;
  readonly model: () => Outcome;
  readonly ledger: () => Promise<string>;
  /** Must run alone (its ledger call awaits before it queues). */
  readonly alone?: boolean;
}

interface World {
  readonly ledger: Ledger;
  readonly store: Store<WalletDb>;
  readonly model: Model;
  readonly clock: FakeClock;
  readonly users: readonly KeyPair[];
  readonly arbiter: KeyPair;
  readonly registry: KeyPair;
  readonly node: KeyPair;
  readonly validatorKeys: readonly KeyPair[];
  readonly stranger: KeyPair;
  readonly prefix: string;
  readonly ids: { tx: string[]; escrows: string[]; stakes: string[] };
  readonly validations: Map<string, ValidationCase[]>;
}

function randomAmount(r: Random, typical: number): string {
  if (r.chance(0.08)) {
    return r.pick(["-5", "0", "", "abc", "+7", "1.5", "007", "18446744073709551616", "1e3"]);
  }
  if (r.chance(0.03)) return MAX_AMOUNT.toString();
  return String(1 + r.int(typical));
}

function newOrOldId(r: Random, pool: string[], fresh: string): string {
  if (pool.length > 0 && r.chance(0.2)) return r.pick(pool);
  // Malformed ids (refused), and one valid only where the "escrow:" prefix is not reserved.
  if (r.chance(0.02)) return r.pick([`${fresh} x`, `escrow:${fresh}`, ""]);
  pool.push(fresh);
  return fresh;
}

function randomTree(r: Random, w: World, amount: bigint): PaymentTree {
  const compute = BigInt(r.int(Number(amount) + 1));
  const rest = amount - compute;
  const gateway = rest > 0n ? BigInt(r.int(Number(rest) + 1)) : 0n;
  const validators = rest - gateway > 0n ? BigInt(r.int(Number(rest - gateway) + 1)) : 0n;
  const treasury = amount - compute - gateway - validators;
  const addresses = w.validatorKeys.slice(0, 1 + r.int(3)).map((k) => k.address);
  const tree = paymentTree(
    // Sometimes less than the amount (the remainder goes back), sometimes more (refused).
    [compute, gateway, validators, r.chance(0.3) ? 0n : treasury + (r.chance(0.1) ? 1n : 0n)],
    {
      compute: w.node.address,
      gateway: r.pick(w.users).address,
      validators: addresses,
      treasury: w.registry.address,
    },
  );
  if (r.chance(0.05)) tree.gatewayAmount = "-1";
  if (r.chance(0.05)) {
    tree.gatewayAddress = "";
    if (tree.gatewayAmount === "0") tree.gatewayAmount = "1";
  }
  return tree;
}

function randomValidation(r: Random, w: World, escrowId: string): ValidationCase {
  const previous = w.validations.get(escrowId) ?? [];
  if (previous.length > 0 && r.chance(0.3)) return r.pick(previous);
  const escrow = w.model.escrows.get(escrowId);
  const amount = escrow?.amount ?? 100n;
  const requestId = r.chance(0.9) ? (escrow?.jobId ?? `${w.prefix}job`) : `${w.prefix}other-job`;
  const tree = escrow?.tree !== undefined && r.chance(0.9) ? escrow.tree : randomTree(r, w, amount);
  const approved = r.chance(0.93);
  const signerCount = r.chance(0.1) ? 2 : 3 + r.int(3);
  const stranger = r.chance(0.05);
  const signers = w.validatorKeys.slice(0, signerCount);
  const validation = completionValidation({
    requestId,
    tree,
    node: w.node,
    signers: stranger ? [...signers.slice(1), w.stranger] : signers,
    approved,
  });
  const tampered = r.chance(0.05);
  if (tampered) {
    const signature = validation.validatorSignatures[0]?.signature;
    if (signature) signature[3] = (signature[3] ?? 0) ^ 0x40;
  }
  const made: ValidationCase = {
    validation,
    requestId,
    tree,
    approved,
    signers: signers.length,
    stranger,
    tampered,
  };
  w.validations.set(escrowId, [...previous, made]);
  return made;
}

/** Runs a ledger call and reduces its outcome to what the model predicts. */
async function outcomeOf(call: () => Promise<string>): Promise<Outcome> {
  try {
    return ok(await call());
  } catch (error) {
    if (!(error instanceof WalletError)) throw error;
    return fail(error.reason === undefined ? error.kind : `${error.kind}/${error.reason}`);
  }
}

function randomCall(r: Random, w: World): Call {
  const { ledger, model } = w;
  const user = () => r.pick(w.users);
  const anyone = () => r.pick([...w.users, w.arbiter, w.registry]);
  const kind = r.int(100);
  if (kind < 14) {
    const from = user();
    const to = r.chance(0.05) ? from : r.pick(w.users.filter((u) => u !== from));
    const caller = r.chance(0.93) ? from : anyone();
    const id = newOrOldId(r, w.ids.tx, `${w.prefix}t${w.ids.tx.length}`);
    const amount = randomAmount(r, 1500);
    return {
      describe: `transfer ${id} ${short(from.address)}->${short(to.address)} ${amount} by ${short(caller.address)}`,
      model: () => model.transfer(caller.address, id, from.address, to.address, amount),
      ledger: async () =>
        recordSummary(
          await ledger.transfer(caller.address, {
            transferId: id,
            fromAddress: from.address,
            toAddress: to.address,
            amount,
          }),
        ),
    };
  }
  if (kind < 26) {
    const to = user();
    const id = newOrOldId(r, w.ids.tx, `${w.prefix}f${w.ids.tx.length}`);
    const amount = randomAmount(r, 6000);
    return {
      describe: `faucet ${id} ${short(to.address)} ${amount}`,
      model: () => model.faucet(id, to.address, amount),
      ledger: async () =>
        recordSummary(
          await ledger.faucet(to.address, { transferId: id, address: to.address, amount }),
        ),
    };
  }
  if (kind < 46) {
    const payer = user();
    const caller = r.chance(0.95) ? payer : anyone();
    const escrowId = newOrOldId(r, w.ids.escrows, `${w.prefix}e${w.ids.escrows.length}`);
    const existing = model.escrows.get(escrowId);
    const retry = existing !== undefined && r.chance(0.7);
    const amount = retry ? existing.amount.toString() : randomAmount(r, 2500);
    const request: EscrowRequest = retry
      ? {
          escrowId,
          jobId: existing.jobId,
          payer: existing.payer,
          arbiter: existing.arbiter,
          amount,
          expiresAtMs: existing.expiresAtMs,
          tree: existing.tree,
        }
      : {
          escrowId,
          jobId: `${w.prefix}job-${escrowId}`,
          payer: payer.address,
          arbiter: w.arbiter.address,
          amount,
          expiresAtMs: w.clock.now().getTime() + (r.chance(0.05) ? 0 : (1 + r.int(4)) * TICK_MS),
          tree:
            r.chance(0.6) && amountProblem(amount) === undefined && BigInt(amount) < 100_000n
              ? randomTree(r, w, BigInt(amount))
              : undefined,
        };
    const by = retry ? existing.payer : caller.address;
    return {
      describe: `create escrow ${escrowId} ${amount} by ${short(by)}${request.tree ? " with tree" : ""}`,
      model: () => model.createEscrow(by, request),
      ledger: async () =>
        recordSummary(
          (
            await ledger.createEscrow(by, {
              escrowId: request.escrowId,
              jobId: request.jobId,
              payerAddress: request.payer,
              amount: request.amount,
              arbiterAddress: request.arbiter,
              expiresAt: new Date(request.expiresAtMs),
              paymentTree: request.tree,
            })
          ).transaction,
        ),
    };
  }
  if (kind < 62) {
    const escrowId = pickKnown(r, [...model.escrows.keys()], w.ids.escrows, `${w.prefix}nope`);
    const caller = r.chance(0.9) ? w.arbiter : anyone();
    const v = randomValidation(r, w, escrowId);
    return {
      describe: `release ${escrowId} by ${short(caller.address)} (request ${v.requestId}, approved ${v.approved}, ${v.signers} signers${v.stranger ? ", stranger" : ""}${v.tampered ? ", tampered" : ""})`,
      model: () => model.release(caller.address, escrowId, v),
      ledger: async () =>
        (
          await ledger.releaseEscrow(caller.address, {
            escrowId,
            completionValidation: v.validation,
          })
        ).transactions
          .map(recordSummary)
          .join(";"),
      alone: true,
    };
  }
  if (kind < 72) {
    const escrowId = pickKnown(r, [...model.escrows.keys()], w.ids.escrows, `${w.prefix}nope`);
    const escrow = model.escrows.get(escrowId);
    const caller = r.chance(0.45)
      ? w.arbiter.address
      : r.chance(0.8) && escrow !== undefined
        ? escrow.payer
        : anyone().address;
    return {
      describe: `refund ${escrowId} by ${short(caller)}`,
      model: () => model.refund(caller, escrowId),
      ledger: async () =>
        recordSummary(
          (await ledger.refundEscrow(caller, { escrowId, reason: "test" })).transaction,
        ),
    };
  }
  if (kind < 80) {
    const staker = user();
    const caller = r.chance(0.95) ? staker : anyone();
    const stakeId = newOrOldId(r, w.ids.stakes, `${w.prefix}s${w.ids.stakes.length}`);
    const existing = model.stakes.get(stakeId);
    const retry = existing !== undefined && r.chance(0.6);
    const stakerAddress = retry ? existing.staker : staker.address;
    const by = retry ? existing.staker : caller.address;
    const amount = retry ? existing.requested : randomAmount(r, 1500);
    return {
      describe: `lock stake ${stakeId} ${amount} for ${short(stakerAddress)} by ${short(by)}`,
      model: () => model.lockStake(by, stakeId, stakerAddress, amount, w.registry.address),
      ledger: async () =>
        recordSummary(
          (
            await ledger.lockStake(by, {
              stakeId,
              stakerAddress,
              amount,
              arbiterAddress: w.registry.address,
            })
          ).transaction,
        ),
    };
  }
  if (kind < 86) {
    const stakeId = pickKnown(r, [...model.stakes.keys()], w.ids.stakes, `${w.prefix}nostake`);
    const caller = r.chance(0.9) ? w.registry : anyone();
    return {
      describe: `unlock stake ${stakeId} by ${short(caller.address)}`,
      model: () => model.unlockStake(caller.address, stakeId),
      ledger: async () => {
        const { transaction } = await ledger.unlockStake(caller.address, { stakeId });
        return transaction === undefined ? "" : recordSummary(transaction);
      },
    };
  }
  if (kind < 94) {
    const stakeId = pickKnown(r, [...model.stakes.keys()], w.ids.stakes, `${w.prefix}nostake`);
    const caller = r.chance(0.9) ? w.registry : anyone();
    const slashId = newOrOldId(r, w.ids.tx, `${w.prefix}x${w.ids.tx.length}`);
    const amount = randomAmount(r, 2000);
    const beneficiary = r.chance(0.8) ? w.registry.address : user().address;
    return {
      describe: `slash ${slashId} of stake ${stakeId} ${amount} by ${short(caller.address)}`,
      model: () => model.slash(caller.address, slashId, stakeId, amount, beneficiary),
      ledger: async () =>
        recordSummary(
          (
            await ledger.slashStake(caller.address, {
              slashId,
              stakeId,
              amount,
              beneficiaryAddress: beneficiary,
            })
          ).transaction,
        ),
    };
  }
  const ticks = 1 + r.int(3);
  return {
    describe: `clock +${ticks * 20} min`,
    model: () => {
      model.nowMs += ticks * TICK_MS;
      return ok("");
    },
    ledger: async () => {
      w.clock.advance(ticks * TICK_MS);
      return "";
    },
    alone: true,
  };
}

/** A faucet credit of `amount` to `user` (sequence set-up). */
function fundCall(w: World, user: KeyPair, id: string, amount: number): Call {
  return {
    describe: `faucet ${id} ${short(user.address)} ${amount}`,
    model: () => w.model.faucet(id, user.address, String(amount)),
    ledger: async () =>
      recordSummary(
        await w.ledger.faucet(user.address, {
          transferId: id,
          address: user.address,
          amount: String(amount),
        }),
      ),
  };
}

/** Mostly an id that exists, sometimes one that was only tried, rarely an unknown one. */
function pickKnown(
  r: Random,
  existing: readonly string[],
  tried: readonly string[],
  unknown: string,
): string {
  if (existing.length > 0 && r.chance(0.85)) return r.pick(existing);
  if (tried.length > 0 && r.chance(0.7)) return r.pick(tried);
  return unknown;
}

function short(address: string): string {
  return address.slice(-5);
}

// ---------------------------------------------------------------------------------------------
// Comparing the ledger with the model

async function compareState(store: Store<WalletDb>, w: World): Promise<void> {
  const db = store.db;
  const { model } = w;
  const addresses = [...w.users, w.arbiter, w.registry, w.node, ...w.validatorKeys].map(
    (k) => k.address,
  );
  const accounts = new Map(
    (
      await db
        .selectFrom("wallet_account")
        .select(["account_id", "debits", "credits"])
        .where("account_id", "in", addresses)
        .execute()
    ).map((row) => [row.account_id, fromMoney(row.credits) - fromMoney(row.debits)]),
  );
  for (const address of addresses) {
    assert.equal(
      accounts.get(address) ?? 0n,
      model.balance(address),
      `balance of ${short(address)}`,
    );
  }
  const escrowIds = [...model.escrows.keys()];
  if (escrowIds.length > 0) {
    const rows = await db
      .selectFrom("wallet_escrow")
      .selectAll()
      .where("escrow_id", "in", escrowIds)
      .execute();
    assert.equal(rows.length, escrowIds.length, "every escrow of the model exists");
    for (const row of rows) {
      const expected = model.escrows.get(row.escrow_id);
      assert.ok(expected);
      assert.deepEqual(
        [
          row.state,
          fromMoney(row.amount),
          fromMoney(row.released_amount),
          fromMoney(row.refunded_amount),
        ],
        [expected.state, expected.amount, expected.released, expected.refunded],
        `escrow ${row.escrow_id}`,
      );
    }
  }
  const stakeIds = [...model.stakes.keys()];
  if (stakeIds.length > 0) {
    const rows = await db
      .selectFrom("wallet_stake")
      .selectAll()
      .where("stake_id", "in", stakeIds)
      .execute();
    assert.equal(rows.length, stakeIds.length, "every stake of the model exists");
    for (const row of rows) {
      const expected = model.stakes.get(row.stake_id);
      assert.ok(expected);
      assert.deepEqual(
        [row.state, fromMoney(row.amount), fromMoney(row.slashed_amount)],
        [expected.state, expected.amount, expected.slashed],
        `stake ${row.stake_id}`,
      );
    }
  }
}

/** The same comparison through the ledger's own reads, once per sequence. */
async function compareReads(w: World): Promise<void> {
  const { ledger, model } = w;
  for (const user of w.users) {
    const balance = await ledger.balance(user.address, user.address);
    let held = 0n;
    for (const escrow of model.escrows.values()) {
      if (escrow.payer === user.address && escrow.state === EscrowState.HELD) held += escrow.amount;
    }
    let staked = 0n;
    for (const stake of model.stakes.values()) {
      if (stake.staker === user.address && stake.state === StakeState.LOCKED)
        staked += stake.amount;
    }
    assert.deepEqual(
      [balance.available, balance.held, balance.staked],
      [model.balance(user.address), held, staked],
      `GetBalance of ${short(user.address)}`,
    );
  }
  for (const [id, expected] of model.escrows) {
    const escrow = await ledger.getEscrow(id, expected.payer);
    assert.equal(escrow.state, expected.state, `GetEscrow ${id}`);
  }
}

// ---------------------------------------------------------------------------------------------

await describeEachStore("ledger against a model", (backend: StoreBackend) => {
  test(`${SEQUENCES} random operation sequences agree with the model (seed ${SEED})`, async () => {
    // Each sequence gets its own validators (their payouts are part of its model).
    let validators = createTestValidators(5, 3);
    const validatorSet = { getValidatorSet: () => validators.source.getValidatorSet() };
    const clock = createFakeClock();
    let ledger: Ledger | undefined;
    let store: Store<WalletDb> | undefined;
    let steps = 0;
    let calls = 0;
    const outcomes = new Map<string, number>();
    for (let index = 0; index < SEQUENCES; index += 1) {
      if (index % SEQUENCES_PER_SPACE === 0) {
        if (ledger !== undefined && store !== undefined) {
          const report = await ledger.checkInvariants();
          assert.deepEqual(report.violations, [], report.violations.join("\n"));
          await ledger.close();
          await store.close();
        }
        store = await openWalletStore(backend, `m${index / SEQUENCES_PER_SPACE}`);
        ledger = createLedger({
          store,
          validatorSet,
          clock: clock.now,
          faucet: { perCallLimit: FAUCET_PER_CALL, perDayLimit: FAUCET_PER_DAY },
        });
      }
      if (ledger === undefined || store === undefined) throw new Error("unreachable");
      const r = createRandom(sequenceSeed(SEED, index));
      validators = createTestValidators(5, 3);
      const world: World = {
        ledger,
        store,
        model: new Model(clock.now().getTime(), validators.addresses, validators.quorum),
        clock,
        users: Array.from({ length: 3 }, () => generateKeyPair()),
        arbiter: generateKeyPair(),
        registry: generateKeyPair(),
        node: generateKeyPair(),
        validatorKeys: validators.keys,
        stranger: generateKeyPair(),
        prefix: `q${index}-`,
        ids: { tx: [], escrows: [], stakes: [] },
        validations: new Map(),
      };
      const trace: string[] = [];
      const length = 1 + r.int(MAX_STEPS);
      try {
        for (let step = 0; step < length; step += 1) {
          // A step is one call, or several sent together that share a batch. The first step funds
          // the sequence's users from the faucet, together.
          const group: Call[] =
            step === 0
              ? world.users.map((user, i) =>
                  fundCall(world, user, `${world.prefix}fund${i}`, 2000 + r.int(3001)),
                )
              : [randomCall(r, world)];
          if (step > 0 && !group[0]?.alone && r.chance(0.25)) {
            for (let extra = 1 + r.int(4); extra > 0; extra -= 1) {
              const call = randomCall(r, world);
              if (!call.alone) group.push(call);
            }
          }
          const started = group.map((call) => outcomeOf(call.ledger));
          const actual = await Promise.all(started);
          group.forEach((call, i) => {
            const expected = call.model();
            trace.push(`${step}: ${call.describe} -> ${JSON.stringify(actual[i])}`);
            assert.deepEqual(actual[i], expected, `${call.describe}: ledger vs model`);
            const verb = call.describe
              .split(" ")
              .slice(
                0,
                call.describe.startsWith("create") || call.describe.startsWith("lock") ? 2 : 1,
              )
              .join(" ");
            const key = `${verb} -> ${expected.ok ? "ok" : expected.error}`;
            outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
          });
          calls += group.length;
          steps += 1;
          const { violations } = await world.ledger.checkInvariants({ journal: false });
          assert.deepEqual(violations, [], violations.join("\n"));
          await compareState(world.store, world);
        }
        await compareReads(world);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        throw new Error(
          `model test failed; replay with TESSERA_WALLET_SEED=${SEED} (sequence ${index})\n${trace.join("\n")}\n${message}`,
          { cause: error },
        );
      }
    }
    if (ledger !== undefined) {
      const report = await ledger.checkInvariants();
      assert.deepEqual(report.violations, [], report.violations.join("\n"));
      await ledger.close();
    }
    console.log(
      `model test [${backend.dialect}]: ${SEQUENCES} sequences, ${steps} steps, ${calls} calls, seed ${SEED}`,
    );
    for (const [key, count] of [...outcomes].sort()) console.log(`  ${key}: ${count}`);
  });
});
