/**
 * Offline verification of M-of-N validator approvals (PreprocessingValidation and
 * CompletionValidation in tessera/common/v1/common.proto) and of the compute node's signed
 * ComputeCompletion inside a completion approval: anyone holding the validators' addresses (or
 * public keys) checks a bundle with no network access. The registry assembles and checks bundles
 * with these functions, and the wallet checks the completion bundle with the same ones before it
 * releases an escrow.
 *
 * Signing rules:
 * - A validator signs, with ed25519, the binary encoding of the terms message
 *   ({@link termsSigningBytes}); the key is the one its address encodes (or the one the registry
 *   lists for it).
 * - A compute node signs the binary encoding of its ComputeCompletion with `signature` empty
 *   ({@link computeCompletionSigningBytes}); the key is the one `compute_node_address` encodes.
 *
 * Pure: imports only protobuf and this package.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  type CompletionTerms,
  CompletionTermsSchema,
  type CompletionValidation,
  type ComputeCompletion,
  ComputeCompletionSchema,
  type PreprocessingTerms,
  PreprocessingTermsSchema,
  type PreprocessingValidation,
  type ValidatorSignature,
  ValidatorSignatureSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { addressFromPublicKey, isAddress, publicKeyFromAddress } from "./address.js";
import { type KeyPair, verify, verifyAsync } from "./keys.js";

/** An approval: route-and-price terms or completion terms, with validator signatures. */
export type ValidationBundle = PreprocessingValidation | CompletionValidation;

/** Terms validators sign. */
export type SignedTerms = PreprocessingTerms | CompletionTerms;

/**
 * A validator whose signature counts: its address (the key is taken from it), or its address and
 * public key as ListValidators returns them (the address must derive from the key).
 */
export type ValidatorKey = string | { readonly address: string; readonly publicKey: Uint8Array };

/** Options of {@link verifyValidationBundle}. */
export interface BundleCheckOptions {
  /** The validators whose signatures count (the N). */
  readonly validators: Iterable<ValidatorKey>;
  /** M: how many distinct listed validators must have signed; at least 1. */
  readonly quorum: number;
  /**
   * When given, a preprocessing approval must not be expired at this time. Completion approvals
   * do not expire.
   */
  readonly now?: Date | undefined;
}

/** The outcome of {@link verifyValidationBundle}. */
export type BundleVerdict =
  | { readonly valid: true; readonly signers: readonly string[] }
  | { readonly valid: false; readonly reason: string };

const EMPTY = new Uint8Array(0);

/** The bytes validators sign: the binary encoding of the terms message. */
export function termsSigningBytes(terms: SignedTerms): Uint8Array {
  return terms.$typeName === "tessera.common.v1.PreprocessingTerms"
    ? toBinary(PreprocessingTermsSchema, terms)
    : toBinary(CompletionTermsSchema, terms);
}

/** `keyPair`'s ValidatorSignature over `terms`, stamped `signedAt` (default now). */
export function signTerms(
  keyPair: KeyPair,
  terms: SignedTerms,
  signedAt: Date = new Date(),
): ValidatorSignature {
  return create(ValidatorSignatureSchema, {
    validatorAddress: keyPair.address,
    signature: keyPair.sign(termsSigningBytes(terms)),
    signedAt: timestampFromDate(signedAt),
  });
}

/**
 * Whether `signature` is a valid signature over `terms` by the validator it names. Never throws.
 */
export function verifyValidatorSignature(
  terms: SignedTerms,
  signature: ValidatorSignature,
  publicKey?: Uint8Array,
): boolean {
  if (!isAddress(signature.validatorAddress)) return false;
  const key = publicKey ?? publicKeyFromAddress(signature.validatorAddress);
  return verify(key, termsSigningBytes(terms), signature.signature);
}

/**
 * Checks an M-of-N approval offline. Valid when the terms are present and:
 * - every signature is by a listed validator, at most one per validator, and verifies over the
 *   binary encoding of the terms (a bundle with any bad signature is refused, not trimmed: the
 *   registry only ever assembles good ones, so a bad one means tampering);
 * - at least `quorum` distinct listed validators signed;
 * - for a completion approval, the node's ComputeCompletion signature verifies and names the
 *   routed node; with `now`, a preprocessing approval is not expired.
 * The reason of an invalid verdict names the first failed check, in this order: terms present,
 * completion by the routed node, each signature by a listed validator and not repeated, the
 * node's completion signature, each validator signature, the quorum (never key or signature
 * bytes). What the terms say (request id, approval, payment tree) is for the caller to compare with what
 * it pays for.
 * @throws RangeError when `quorum` is not a positive integer, or a listed address does not derive
 * from its public key.
 */
export function verifyValidationBundle(
  bundle: ValidationBundle,
  options: BundleCheckOptions,
): BundleVerdict {
  const plan = planBundleCheck(bundle, options);
  if ("valid" in plan) return plan;
  if (plan.completion !== undefined && !verifyComputeCompletion(plan.completion)) {
    return { valid: false, reason: COMPLETION_SIGNATURE_PROBLEM };
  }
  const results: boolean[] = [];
  for (const check of plan.checks) {
    const ok = verify(check.key, plan.bytes, check.signature);
    results.push(ok);
    if (!ok) break;
  }
  return tally(plan, results, options.quorum);
}

/**
 * {@link verifyValidationBundle} with every signature checked on libuv's thread pool, in
 * parallel, so a busy server's event loop does not stall ~0.1 ms per signature. Same checks, same
 * verdicts and reasons; rejects with the same RangeErrors.
 */
export async function verifyValidationBundleAsync(
  bundle: ValidationBundle,
  options: BundleCheckOptions,
): Promise<BundleVerdict> {
  const plan = planBundleCheck(bundle, options);
  if ("valid" in plan) return plan;
  const [completionOk, ...results] = await Promise.all([
    plan.completion === undefined ? true : verifyComputeCompletionAsync(plan.completion),
    ...plan.checks.map((check) => verifyAsync(check.key, plan.bytes, check.signature)),
  ]);
  if (!completionOk) return { valid: false, reason: COMPLETION_SIGNATURE_PROBLEM };
  return tally(plan, results, options.quorum);
}

/** The bytes a node signs: the completion's binary encoding with `signature` empty. */
export function computeCompletionSigningBytes(completion: ComputeCompletion): Uint8Array {
  return toBinary(ComputeCompletionSchema, { ...completion, signature: EMPTY });
}

/**
 * A copy of `completion` signed by `keyPair`.
 * @throws TypeError when `compute_node_address` is not the key pair's address.
 */
export function signComputeCompletion(
  completion: ComputeCompletion,
  keyPair: KeyPair,
): ComputeCompletion {
  if (completion.computeNodeAddress !== keyPair.address) {
    throw new TypeError(`the completion's compute_node_address is not ${keyPair.address}`);
  }
  return { ...completion, signature: keyPair.sign(computeCompletionSigningBytes(completion)) };
}

/**
 * Whether `signature` is the signature of the key `compute_node_address` encodes over the
 * completion. False, never a throw, for a malformed address or a missing signature.
 */
export function verifyComputeCompletion(completion: ComputeCompletion): boolean {
  if (completion.signature.length === 0 || !isAddress(completion.computeNodeAddress)) return false;
  return verify(
    publicKeyFromAddress(completion.computeNodeAddress),
    computeCompletionSigningBytes(completion),
    completion.signature,
  );
}

/** {@link verifyComputeCompletion} on libuv's thread pool. Resolves false, never rejects. */
export function verifyComputeCompletionAsync(completion: ComputeCompletion): Promise<boolean> {
  if (completion.signature.length === 0 || !isAddress(completion.computeNodeAddress)) {
    return Promise.resolve(false);
  }
  return verifyAsync(
    publicKeyFromAddress(completion.computeNodeAddress),
    computeCompletionSigningBytes(completion),
    completion.signature,
  );
}

const COMPLETION_SIGNATURE_PROBLEM = "the compute node's completion signature does not verify";

/** The signature checks a bundle needs, found before any cryptography runs. */
interface BundlePlan {
  readonly bytes: Uint8Array;
  readonly checks: ReadonlyArray<{
    readonly address: string;
    readonly key: Uint8Array;
    readonly signature: Uint8Array;
  }>;
  /** The node completion to verify too (completion approvals only). */
  readonly completion: ComputeCompletion | undefined;
}

/** The checks to run, or the verdict when a check that needs no signature work already fails. */
function planBundleCheck(
  bundle: ValidationBundle,
  options: BundleCheckOptions,
): BundlePlan | BundleVerdict {
  const { quorum } = options;
  if (!Number.isInteger(quorum) || quorum < 1) {
    throw new RangeError(`quorum must be a positive integer, got ${quorum}`);
  }
  const keys = validatorKeyMap(options.validators);
  const terms = bundle.terms;
  if (terms === undefined) return { valid: false, reason: "the bundle has no terms" };

  let completion: ComputeCompletion | undefined;
  if (terms.$typeName === "tessera.common.v1.PreprocessingTerms") {
    const problem = preprocessingTermsProblem(terms, options.now);
    if (problem !== undefined) return { valid: false, reason: problem };
  } else {
    completion = terms.computeCompletion;
    if (completion === undefined) {
      return { valid: false, reason: "the terms have no compute completion" };
    }
    if (completion.computeNodeAddress !== terms.route?.computeNodeAddress) {
      return { valid: false, reason: "the completion is not by the routed compute node" };
    }
  }

  const checks: Array<BundlePlan["checks"][number]> = [];
  const seen = new Set<string>();
  for (const [index, signature] of bundle.validatorSignatures.entries()) {
    const who = `signature ${index + 1} (${signature.validatorAddress || "no address"})`;
    const key = keys.get(signature.validatorAddress);
    if (key === undefined) return { valid: false, reason: `${who} is not by a listed validator` };
    if (seen.has(signature.validatorAddress)) {
      return { valid: false, reason: `${who} repeats a validator` };
    }
    seen.add(signature.validatorAddress);
    checks.push({ address: signature.validatorAddress, key, signature: signature.signature });
  }
  return { bytes: termsSigningBytes(terms), checks, completion };
}

/** The verdict once every signature of `plan` was checked (`results` in the same order). */
function tally(plan: BundlePlan, results: readonly boolean[], quorum: number): BundleVerdict {
  const signers: string[] = [];
  for (const [index, check] of plan.checks.entries()) {
    if (results[index] !== true) {
      return {
        valid: false,
        reason: `signature ${index + 1} (${check.address}) does not verify over the terms`,
      };
    }
    signers.push(check.address);
  }
  if (signers.length < quorum) {
    return { valid: false, reason: `${signers.length} validator signature(s), ${quorum} required` };
  }
  return { valid: true, signers };
}

function validatorKeyMap(validators: Iterable<ValidatorKey>): Map<string, Uint8Array> {
  const keys = new Map<string, Uint8Array>();
  for (const validator of validators) {
    if (typeof validator === "string") {
      if (isAddress(validator)) keys.set(validator, publicKeyFromAddress(validator));
      continue;
    }
    if (addressFromPublicKey(validator.publicKey) !== validator.address) {
      throw new RangeError(`validator ${validator.address} does not derive from its public key`);
    }
    keys.set(validator.address, validator.publicKey);
  }
  return keys;
}

function preprocessingTermsProblem(
  terms: PreprocessingTerms,
  now: Date | undefined,
): string | undefined {
  if (terms.expiresAt === undefined) return "the terms have no expiry";
  if (now !== undefined && timestampMs(terms.expiresAt) <= now.getTime()) {
    return "the approval has expired";
  }
  return undefined;
}
