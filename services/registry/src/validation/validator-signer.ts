/**
 * One validator's checks and signature (the `validator` role). The validator holds one key; for
 * each proposal it re-derives the terms from what it reads itself (the node's signed record and
 * standing, the subnet, the validator set) and signs the binary encoding of the proposed terms only
 * when they match. No signature is ever given for terms it disagrees with: the error names the
 * first failed check instead.
 */
import type { KeyPair } from "@tessera/identity/keys";
import { signTerms } from "@tessera/identity/validation-bundle";
import type { ValidatorSignature } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type {
  SignCompletionRequest,
  SignPreprocessingRequest,
} from "@tessera/proto/tessera/registry/v1/validator_service_pb.js";
import { buildCompletionTerms, checkCompletionTerms, judgeCompletion } from "./completion.js";
import { ValidationError } from "./errors.js";
import { type CompletionExecutorRegistry, createCompletionExecutorRegistry } from "./executors.js";
import type { ValidationPolicy } from "./policy.js";
import { checkPreprocessingTerms } from "./preprocessing.js";
import { protocolVersionProblem } from "./protocol-version.js";
import type { ValidationSources } from "./sources.js";

/** Options of {@link createValidatorSigner}. */
export interface ValidatorSignerOptions {
  /** The validator's key (VALIDATOR_KEY_FILE). */
  readonly keyPair: KeyPair;
  /** Where the validator reads nodes, subnets and the validator set (the registry's read RPCs). */
  readonly sources: ValidationSources;
  /** The rules shared with the registry. */
  readonly policy: ValidationPolicy;
  /** Re-execution hook; default an empty registry (judge on signatures and hashes). */
  readonly executors?: CompletionExecutorRegistry | undefined;
  /** Wall clock; default `() => new Date()`. */
  readonly clock?: (() => Date) | undefined;
}

/** A validator's signing engine. */
export interface ValidatorSigner {
  /** The validator's address. */
  readonly address: string;
  /**
   * Checks proposed route-and-price terms and signs them.
   * @throws ValidationError naming the failed check.
   */
  signPreprocessing(request: SignPreprocessingRequest): Promise<ValidatorSignature>;
  /**
   * Judges the work, checks the proposed completion terms carry the same verdict, and signs them.
   * @throws ValidationError naming the failed check.
   */
  signCompletion(request: SignCompletionRequest, signal: AbortSignal): Promise<ValidatorSignature>;
}

/** A {@link ValidatorSigner} for `options.keyPair`. */
export function createValidatorSigner(options: ValidatorSignerOptions): ValidatorSigner {
  const { keyPair, sources, policy } = options;
  const executors = options.executors ?? createCompletionExecutorRegistry();
  const clock = options.clock ?? (() => new Date());

  const checkVersion = (version: SignPreprocessingRequest["protocolVersion"]) => {
    const problem = protocolVersionProblem(version);
    if (problem !== undefined) throw new ValidationError("failed_precondition", problem);
  };

  return {
    address: keyPair.address,

    async signPreprocessing(request) {
      checkVersion(request.protocolVersion);
      const now = clock();
      const terms = await checkPreprocessingTerms({
        work: request.work,
        terms: request.terms,
        selfAddress: keyPair.address,
        sources,
        policy,
        now,
      });
      return signTerms(keyPair, terms, now);
    },

    async signCompletion(request, signal) {
      checkVersion(request.protocolVersion);
      const terms = request.terms;
      if (terms === undefined) throw new ValidationError("invalid_argument", "terms are missing");
      const now = clock();
      const judged = await judgeCompletion({
        completion: terms.computeCompletion,
        preprocessing: request.preprocessingValidation,
        evidence: request.evidence,
        validatorSet: await sources.getValidatorSet(),
        executors,
        policy,
        now,
        signal,
      });
      const expected = buildCompletionTerms(
        judged.completion,
        judged.approvedTerms,
        judged.approved,
      );
      checkCompletionTerms(terms, expected, judged);
      return signTerms(keyPair, terms, now);
    },
  };
}
