/**
 * Payment trees (tessera.common.v1.PaymentTree) as the wallet pays them: who receives what when an
 * escrow is released.
 */
import { toBinary } from "@bufbuild/protobuf";
import { isAddress } from "@tessera/identity/address";
import { type PaymentTree, PaymentTreeSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { invalidArgument, WalletError } from "./errors.js";
import { parseShare } from "./input.js";

/** Most validator addresses a tree may name. */
export const MAX_TREE_VALIDATORS = 64;

/** Who a payout goes to, by the tree's role. */
export type PayeeRole = "compute" | "gateway" | "validator" | "treasury";

/** One non-zero payment out of an escrow. */
export interface Payout {
  readonly role: PayeeRole;
  readonly address: string;
  readonly amount: bigint;
}

/** A tree that passed {@link parsePaymentTree}: its total and its payouts in paying order. */
export interface ParsedPaymentTree {
  readonly tree: PaymentTree;
  /** The four shares added up. */
  readonly total: bigint;
  /** Non-zero payouts: compute, gateway, each validator (tree order), treasury. */
  readonly payouts: readonly Payout[];
  /**
   * Base64 of the tree's binary encoding: how the escrow stores it, and what "the same tree"
   * means when a release is checked against the escrow (protobuf-es encodes a message
   * deterministically: fields in number order).
   */
  readonly encoded: string;
}

/**
 * Checks a payment tree and works out its payouts. Rules:
 * - each of the four amounts is a decimal string of base units, zero allowed, at most 2^64 - 1;
 * - a non-zero compute, gateway or treasury share needs a valid address for it (an address given
 *   for a zero share must be valid too);
 * - every validator address is valid and appears once, at most {@link MAX_TREE_VALIDATORS} of
 *   them, and a non-zero validator share needs at least one;
 * - the validator share is split by {@link splitValidatorShare}.
 * That the total fits the escrow's amount is for the caller to check.
 * @throws WalletError invalid_argument naming the field, e.g. "payment_tree.gateway_address".
 */
export function parsePaymentTree(field: string, tree: PaymentTree): ParsedPaymentTree {
  const compute = parseShare(`${field}.compute_amount`, tree.computeAmount);
  const gateway = parseShare(`${field}.gateway_amount`, tree.gatewayAmount);
  const validators = parseShare(`${field}.validator_amount`, tree.validatorAmount);
  const treasury = parseShare(`${field}.treasury_amount`, tree.treasuryAmount);
  payeeAddress(`${field}.compute_address`, tree.computeAddress, compute);
  payeeAddress(`${field}.gateway_address`, tree.gatewayAddress, gateway);
  payeeAddress(`${field}.treasury_address`, tree.treasuryAddress, treasury);
  const addresses = tree.validatorAddresses;
  if (addresses.length > MAX_TREE_VALIDATORS) {
    throw invalidArgument(
      `${field}.validator_addresses`,
      `at most ${MAX_TREE_VALIDATORS} addresses, got ${addresses.length}`,
    );
  }
  if (validators > 0n && addresses.length === 0) {
    throw invalidArgument(`${field}.validator_addresses`, "a validator share needs validators");
  }
  const seen = new Set<string>();
  for (const [index, address] of addresses.entries()) {
    if (!isAddress(address)) {
      throw invalidArgument(`${field}.validator_addresses[${index}]`, "is not an address");
    }
    if (seen.has(address)) {
      throw invalidArgument(`${field}.validator_addresses[${index}]`, "repeats an address");
    }
    seen.add(address);
  }

  const payouts: Payout[] = [];
  const pay = (role: PayeeRole, address: string, amount: bigint) => {
    if (amount > 0n) payouts.push({ role, address, amount });
  };
  pay("compute", tree.computeAddress, compute);
  pay("gateway", tree.gatewayAddress, gateway);
  if (addresses.length > 0) {
    splitValidatorShare(validators, addresses).forEach((amount, index) => {
      pay("validator", addresses[index] as string, amount);
    });
  }
  pay("treasury", tree.treasuryAddress, treasury);
  return {
    tree,
    total: compute + gateway + validators + treasury,
    payouts,
    encoded: encodePaymentTree(tree),
  };
}

/** Base64 of `tree`'s binary encoding (see {@link ParsedPaymentTree.encoded}). */
export function encodePaymentTree(tree: PaymentTree): string {
  return Buffer.from(toBinary(PaymentTreeSchema, tree)).toString("base64");
}

/**
 * The remainder rule: `amount` is divided equally between `addresses` in integer base units; when
 * it does not divide, the remainder r (< number of addresses) goes one unit each to the FIRST r
 * addresses in the order the tree lists them. E.g. 10 between three validators pays 4, 3, 3; 2
 * between three pays 1, 1, 0 (a zero share is not paid). The tree's order is signed by the
 * validators, so every wallet computes the same split.
 * @throws WalletError invalid_argument when `addresses` is empty.
 */
export function splitValidatorShare(amount: bigint, addresses: readonly string[]): bigint[] {
  if (addresses.length === 0) {
    throw new WalletError("invalid_argument", "a validator share needs validators");
  }
  const count = BigInt(addresses.length);
  const base = amount / count;
  const remainder = amount % count;
  return addresses.map((_, index) => (BigInt(index) < remainder ? base + 1n : base));
}

function payeeAddress(field: string, address: string, share: bigint): void {
  if (address === "") {
    if (share > 0n) throw invalidArgument(field, "a non-zero share needs an address");
    return;
  }
  if (!isAddress(address)) throw invalidArgument(field, "is not an address");
}
