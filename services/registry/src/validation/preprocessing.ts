/**
 * Route-and-price terms (PreprocessingTerms): how the registry builds them and how a validator
 * checks them. Both sides derive the terms from the same inputs with the same functions (the
 * work, the node's signed record and standing, the subnet, the validator set, the shared policy),
 * so honest parties agree byte for byte, and a validator that disagrees names the first field.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { isAddress } from "@tessera/identity/address";
import {
  type PreprocessingTerms,
  PreprocessingTermsSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type NodeEntry,
  type SubnetMetadata,
  SubnetStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import {
  type WorkDescription,
  WorkKind,
} from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import { ValidationError } from "./errors.js";
import {
  buildPaymentTree,
  type PaymentSplitBps,
  paymentSplitProblem,
  paymentTreeDifference,
} from "./payment-tree.js";
import type { ValidationPolicy } from "./policy.js";
import { maxPriceOf, priceWork } from "./pricing.js";
import { PROTOCOL_VERSION, protocolVersionProblem } from "./protocol-version.js";
import { routeDifference, routeProblem, routeTo } from "./route.js";
import type { ValidationSources } from "./sources.js";

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * Why `work` is malformed, or undefined. Checks the fields every validation needs: kind, request
 * id (1-128 printable ASCII), model, addresses, input hash size.
 */
export function workProblem(work: WorkDescription | undefined): string | undefined {
  if (work === undefined) return "work is missing";
  if (work.kind === WorkKind.UNSPECIFIED) return "work.kind is not set";
  if (!REQUEST_ID.test(work.requestId)) {
    return "work.request_id must be 1 to 128 printable ASCII characters";
  }
  if (work.modelId === "") return "work.model_id is empty";
  if (!isAddress(work.gatewayAddress)) return "work.gateway_address is not a valid address";
  if (!isAddress(work.clientAddress)) return "work.client_address is not a valid address";
  if (work.computeNodeAddress !== "" && !isAddress(work.computeNodeAddress)) {
    return "work.compute_node_address is not a valid address";
  }
  if (work.inputHash.length !== 0 && work.inputHash.length !== 32) {
    return "work.input_hash must be empty or 32 bytes (SHA-256)";
  }
  return undefined;
}

/** What validation takes from a subnet. */
export interface SubnetFacts {
  readonly subnetId: bigint;
  readonly split: PaymentSplitBps;
  readonly free: boolean;
}

/**
 * The facts of `subnetId` for work on `modelId`.
 * @throws ValidationError: not_found for an unknown subnet (other than 0) or a model the subnet
 * does not serve; failed_precondition for a subnet that is not active or has a broken split.
 */
export async function subnetFacts(
  sources: Pick<ValidationSources, "getSubnet">,
  subnetId: bigint,
  modelId: string,
  policy: ValidationPolicy,
): Promise<SubnetFacts> {
  const subnet = await sources.getSubnet(subnetId);
  if (subnet === undefined) {
    if (subnetId === 0n) return { subnetId, split: policy.defaultSplit, free: false };
    throw new ValidationError("not_found", `subnet ${subnetId} is unknown`);
  }
  return factsOf(subnet, modelId, policy);
}

function factsOf(subnet: SubnetMetadata, modelId: string, policy: ValidationPolicy): SubnetFacts {
  const id = subnet.subnetId;
  if (id !== 0n && subnet.status !== SubnetStatus.ACTIVE) {
    throw new ValidationError("failed_precondition", `subnet ${id} is not active`);
  }
  if (id !== 0n && !subnet.models.some((model) => model.modelId === modelId)) {
    throw new ValidationError("not_found", `subnet ${id} does not serve model "${modelId}"`);
  }
  const split = subnet.paymentSplit ?? policy.defaultSplit;
  const problem = paymentSplitProblem(split);
  if (problem !== undefined) {
    throw new ValidationError("failed_precondition", `subnet ${id}: ${problem}`);
  }
  return { subnetId: id, split, free: subnet.free };
}

/** Everything the terms of one piece of work derive from. */
export interface PreprocessingInputs {
  readonly work: WorkDescription;
  /** The routed node's directory entry (already checked with `routeProblem`). */
  readonly node: NodeEntry;
  readonly subnet: SubnetFacts;
  /** Validators sharing the validator amount: the active set asked to sign, sorted. */
  readonly validatorAddresses: readonly string[];
  readonly expiresAt: Date;
  readonly policy: ValidationPolicy;
}

/**
 * The terms for `inputs`: the route to the node, the price from its hourly rate and the subnet's
 * split, and the expiry.
 * @throws ValidationError(failed_precondition) when the price exceeds `max_price`.
 */
export function buildPreprocessingTerms(inputs: PreprocessingInputs): PreprocessingTerms {
  const { work, node, subnet, policy } = inputs;
  const record = node.record;
  if (record === undefined) throw new ValidationError("not_found", "the node has no record");
  const price = priceWork(work, record.pricePerHour, subnet.free, policy);
  const max = maxPriceOf(work);
  if (max !== undefined && price > max) {
    throw new ValidationError(
      "failed_precondition",
      `price ${price} of node ${record.address} is above max_price ${max}`,
    );
  }
  return create(PreprocessingTermsSchema, {
    protocolVersion: PROTOCOL_VERSION,
    requestId: work.requestId,
    modelId: work.modelId,
    route: routeTo(node, work.gatewayAddress),
    paymentTree: buildPaymentTree(price, subnet.split, {
      computeAddress: record.payoutAddress || record.address,
      gatewayAddress: work.gatewayAddress,
      validatorAddresses: inputs.validatorAddresses,
      treasuryAddress: policy.treasuryAddress,
    }),
    expiresAt: timestampFromDate(inputs.expiresAt),
    subnetId: work.subnetId,
  });
}

/** What a validator checks proposed terms against. */
export interface PreprocessingCheck {
  readonly work: WorkDescription | undefined;
  readonly terms: PreprocessingTerms | undefined;
  /** The validator's own address: it must be among the paid validators. */
  readonly selfAddress: string;
  readonly sources: ValidationSources;
  readonly policy: ValidationPolicy;
  readonly now: Date;
}

/**
 * A validator's checks of proposed route-and-price terms: the routed node is registered, online,
 * not banned, hosts the model and is in the subnet; the payment tree follows the node's price and
 * the subnet's split and adds up; the price is within `max_price`; the expiry is in the future and
 * within the validator's limit; the paid validators are active and include this one.
 * Returns the checked terms.
 * @throws ValidationError naming the first failed check (failed_precondition for a disagreement,
 * invalid_argument for a malformed request, not_found for an unknown subnet or model).
 */
export async function checkPreprocessingTerms(
  check: PreprocessingCheck,
): Promise<PreprocessingTerms> {
  const { work, terms, policy, now } = check;
  const bad = workProblem(work);
  if (bad !== undefined || work === undefined) {
    throw new ValidationError("invalid_argument", bad ?? "work is missing");
  }
  if (terms === undefined) throw new ValidationError("invalid_argument", "terms are missing");
  const version = protocolVersionProblem(terms.protocolVersion);
  if (version !== undefined) throw new ValidationError("failed_precondition", `terms: ${version}`);
  const disagree = (what: string) => new ValidationError("failed_precondition", what);
  if (terms.requestId !== work.requestId) throw disagree("terms.request_id differs from the work");
  if (terms.modelId !== work.modelId) throw disagree("terms.model_id differs from the work");
  if (terms.subnetId !== work.subnetId) throw disagree("terms.subnet_id differs from the work");
  const routed = terms.route?.computeNodeAddress ?? "";
  if (work.computeNodeAddress !== "" && routed !== work.computeNodeAddress) {
    throw disagree("the route is not the compute node the work names");
  }
  if (terms.expiresAt === undefined) throw disagree("terms.expires_at is missing");
  const expiresMs = timestampMs(terms.expiresAt);
  if (expiresMs <= now.getTime()) throw disagree("the terms have already expired");
  if (expiresMs > now.getTime() + policy.maxApprovalTtlMs + policy.clockSkewMs) {
    throw disagree(`terms.expires_at is more than ${policy.maxApprovalTtlMs} ms away`);
  }

  const subnet = await subnetFacts(check.sources, work.subnetId, work.modelId, policy);
  const node = await check.sources.getNode(routed);
  const problem = routeProblem(node, {
    kind: work.kind,
    modelId: work.modelId,
    subnetId: work.subnetId,
    now,
    minPowDifficulty: policy.minPowDifficulty,
  });
  if (problem !== undefined || node === undefined) {
    throw disagree(`the routed node does not qualify: ${problem ?? "unknown node"}`);
  }
  const routeDiff = routeDifference(routeTo(node, work.gatewayAddress), terms.route);
  if (routeDiff !== undefined) throw disagree(`${routeDiff} does not match the directory`);

  const paid = terms.paymentTree?.validatorAddresses ?? [];
  await checkPaidValidators(paid, check.selfAddress, check.sources);

  const expected = buildPreprocessingTerms({
    work,
    node,
    subnet,
    validatorAddresses: paid,
    expiresAt: new Date(expiresMs),
    policy,
  });
  if (terms.paymentTree === undefined) throw disagree("terms.payment_tree is missing");
  const treeDiff = paymentTreeDifference(
    expected.paymentTree ?? terms.paymentTree,
    terms.paymentTree,
  );
  if (treeDiff !== undefined) {
    throw disagree(`payment_tree.${treeDiff} does not follow the node's price and the split`);
  }
  return terms;
}

async function checkPaidValidators(
  paid: readonly string[],
  self: string,
  sources: ValidationSources,
): Promise<void> {
  const disagree = (what: string) => new ValidationError("failed_precondition", what);
  if (!paid.includes(self)) throw disagree("this validator is not among the paid validators");
  const sorted = [...new Set(paid)].sort();
  if (sorted.length !== paid.length || sorted.some((address, i) => address !== paid[i])) {
    throw disagree("payment_tree.validator_addresses must be sorted and distinct");
  }
  const active = new Set((await sources.getValidatorSet()).validators.map((v) => v.address));
  const stranger = paid.find((address) => !active.has(address));
  if (stranger !== undefined) {
    throw disagree(`payment_tree.validator_addresses names ${stranger}, not an active validator`);
  }
}
