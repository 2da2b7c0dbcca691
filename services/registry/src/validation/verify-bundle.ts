/**
 * Offline verification of M-of-N validator approvals (PreprocessingValidation and
 * CompletionValidation in tessera/common/v1/common.proto): anyone holding the validators' addresses
 * (or public keys) checks a bundle with no network access.
 *
 * Pure: imports only protobuf and @tessera/identity, so the wallet can verify a bundle before it
 * releases an escrow without depending on the registry.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { addressFromPublicKey, isAddress, publicKeyFromAddress } from "@tessera/identity/address";
import { type KeyPair, verify } from "@tessera/identity/keys";
import {
  type CompletionTerms,
  CompletionTermsSchema,
  type CompletionValidation,
  type PreprocessingTerms,
  PreprocessingTermsSchema,
  type PreprocessingValidation,
  type ValidatorSignature,
  ValidatorSignatureSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { verifyComputeCompletion } from "./compute-completion.js";

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
 * The reason of an invalid verdict names the first failed check (never key or signature bytes).
 * @throws RangeError when `quorum` is not a positive integer, or a listed address does not derive
 * from its public key.
 */
export function verifyValidationBundle(
  bundle: ValidationBundle,
  options: BundleCheckOptions,
): BundleVerdict {
  const { quorum } = options;
  if (!Number.isInteger(quorum) || quorum < 1) {
    throw new RangeError(`quorum must be a positive integer, got ${quorum}`);
  }
  const keys = validatorKeyMap(options.validators);
  const terms = bundle.terms;
  if (terms === undefined) return { valid: false, reason: "the bundle has no terms" };

  const problem =
    terms.$typeName === "tessera.common.v1.PreprocessingTerms"
      ? preprocessingTermsProblem(terms, options.now)
      : completionTermsProblem(terms);
  if (problem !== undefined) return { valid: false, reason: problem };

  const bytes = termsSigningBytes(terms);
  const signers: string[] = [];
  for (const [index, signature] of bundle.validatorSignatures.entries()) {
    const who = `signature ${index + 1} (${signature.validatorAddress || "no address"})`;
    const key = keys.get(signature.validatorAddress);
    if (key === undefined) return { valid: false, reason: `${who} is not by a listed validator` };
    if (signers.includes(signature.validatorAddress)) {
      return { valid: false, reason: `${who} repeats a validator` };
    }
    if (!verify(key, bytes, signature.signature)) {
      return { valid: false, reason: `${who} does not verify over the terms` };
    }
    signers.push(signature.validatorAddress);
  }
  if (signers.length < quorum) {
    return {
      valid: false,
      reason: `${signers.length} validator signature(s), ${quorum} required`,
    };
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

function completionTermsProblem(terms: CompletionTerms): string | undefined {
  const completion = terms.computeCompletion;
  if (completion === undefined) return "the terms have no compute completion";
  if (completion.computeNodeAddress !== terms.route?.computeNodeAddress) {
    return "the completion is not by the routed compute node";
  }
  if (!verifyComputeCompletion(completion)) {
    return "the compute node's completion signature does not verify";
  }
  return undefined;
}
