/**
 * Payment trees: how one price is split between the compute node, the gateway (or job server),
 * the validators and the treasury, in basis points of the subnet's PaymentSplit. Each share but the
 * compute node's is rounded down; the compute node gets the remainder, so the shares always add up
 * to the price exactly. Amounts are bigints here and decimal strings on the wire.
 */
import { create } from "@bufbuild/protobuf";
import { type PaymentTree, PaymentTreeSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";

/** Basis points of one whole. */
export const BPS_TOTAL = 10_000;

/** A subnet's split in basis points; the four shares add up to {@link BPS_TOTAL}. */
export interface PaymentSplitBps {
  readonly computeBps: number;
  readonly gatewayBps: number;
  readonly validatorBps: number;
  readonly treasuryBps: number;
}

/** NCN's default split: 80 % compute, 10 % gateway, 5 % validators, 5 % treasury. */
export const DEFAULT_PAYMENT_SPLIT: PaymentSplitBps = Object.freeze({
  computeBps: 8000,
  gatewayBps: 1000,
  validatorBps: 500,
  treasuryBps: 500,
});

/** Why `split` is not a valid split, or undefined. */
export function paymentSplitProblem(split: PaymentSplitBps): string | undefined {
  const parts = [split.computeBps, split.gatewayBps, split.validatorBps, split.treasuryBps];
  if (parts.some((p) => !Number.isInteger(p) || p < 0)) {
    return "payment split shares must be non-negative integers";
  }
  const sum = parts.reduce((a, b) => a + b, 0);
  if (sum !== BPS_TOTAL) return `payment split shares add up to ${sum}, not ${BPS_TOTAL}`;
  return undefined;
}

/**
 * Parses "8000/1000/500/500" (compute/gateway/validators/treasury basis points).
 * @throws RangeError naming the problem.
 */
export function parsePaymentSplit(text: string): PaymentSplitBps {
  const parts = text.split("/").map((p) => p.trim());
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,5}$/.test(p))) {
    throw new RangeError(
      `payment split must be four basis-point integers "compute/gateway/validators/treasury", got "${text}"`,
    );
  }
  const [computeBps, gatewayBps, validatorBps, treasuryBps] = parts.map(Number) as [
    number,
    number,
    number,
    number,
  ];
  const split = { computeBps, gatewayBps, validatorBps, treasuryBps };
  const problem = paymentSplitProblem(split);
  if (problem !== undefined) throw new RangeError(problem);
  return split;
}

/** Who is paid out of a payment tree. */
export interface PaymentPayees {
  readonly computeAddress: string;
  readonly gatewayAddress: string;
  readonly validatorAddresses: readonly string[];
  readonly treasuryAddress: string;
}

/**
 * The payment tree of `total` base units split by `split`.
 * @throws RangeError for a negative total or an invalid split.
 */
export function buildPaymentTree(
  total: bigint,
  split: PaymentSplitBps,
  payees: PaymentPayees,
): PaymentTree {
  if (total < 0n) throw new RangeError("a price cannot be negative");
  const problem = paymentSplitProblem(split);
  if (problem !== undefined) throw new RangeError(problem);
  const share = (bps: number) => (total * BigInt(bps)) / BigInt(BPS_TOTAL);
  const gateway = share(split.gatewayBps);
  const validators = share(split.validatorBps);
  const treasury = share(split.treasuryBps);
  return create(PaymentTreeSchema, {
    computeAmount: (total - gateway - validators - treasury).toString(),
    gatewayAmount: gateway.toString(),
    validatorAmount: validators.toString(),
    treasuryAmount: treasury.toString(),
    computeAddress: payees.computeAddress,
    gatewayAddress: payees.gatewayAddress,
    validatorAddresses: [...payees.validatorAddresses],
    treasuryAddress: payees.treasuryAddress,
  });
}

const DECIMAL = /^(?:0|[1-9][0-9]{0,77})$/;

/**
 * A decimal amount of base units as a bigint, or undefined when the text is not a canonical
 * non-negative decimal integer (no sign, no leading zeros, at most 78 digits).
 */
export function parseAmount(text: string): bigint | undefined {
  return DECIMAL.test(text) ? BigInt(text) : undefined;
}

/** The sum of a tree's four amounts, or undefined when one of them is not a valid amount. */
export function paymentTreeTotal(tree: PaymentTree): bigint | undefined {
  let total = 0n;
  for (const text of [
    tree.computeAmount,
    tree.gatewayAmount,
    tree.validatorAmount,
    tree.treasuryAmount,
  ]) {
    const amount = parseAmount(text);
    if (amount === undefined) return undefined;
    total += amount;
  }
  return total;
}

/**
 * The first field in which `actual` differs from `expected` ("compute_amount", ...), or undefined
 * when both trees are the same.
 */
export function paymentTreeDifference(
  expected: PaymentTree,
  actual: PaymentTree,
): string | undefined {
  const fields = [
    ["compute_amount", expected.computeAmount, actual.computeAmount],
    ["gateway_amount", expected.gatewayAmount, actual.gatewayAmount],
    ["validator_amount", expected.validatorAmount, actual.validatorAmount],
    ["treasury_amount", expected.treasuryAmount, actual.treasuryAmount],
    ["compute_address", expected.computeAddress, actual.computeAddress],
    ["gateway_address", expected.gatewayAddress, actual.gatewayAddress],
    ["treasury_address", expected.treasuryAddress, actual.treasuryAddress],
    [
      "validator_addresses",
      expected.validatorAddresses.join(","),
      actual.validatorAddresses.join(","),
    ],
  ] as const;
  for (const [name, want, got] of fields) if (want !== got) return name;
  return undefined;
}
