/**
 * Completion terms (CompletionTerms): the verdict on finished work. The registry and each
 * validator run the same checks ({@link judgeCompletion}) on the node's signed ComputeCompletion,
 * the preprocessing approval it ran under and any evidence, so they propose and sign the same
 * verdict:
 *
 * - Request-level problems are errors, not verdicts: a malformed completion (invalid_argument), a
 *   node signature that does not verify (unauthenticated), a completion by another node than the
 *   approved route, for another request, or finished after the approval expired, or an approval
 *   without M valid validator signatures (failed_precondition).
 * - The work itself is judged: the result must hash to `result_hash`, and an executor that
 *   supports the work must agree when it runs it again. Otherwise the verdict is
 *   `approved = false` (the wallet refunds).
 */
import { create, equals } from "@bufbuild/protobuf";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { isAddress } from "@tessera/identity/address";
import { bytesEqual, sha256, toHex } from "@tessera/identity/hash";
import {
  verifyComputeCompletion,
  verifyValidationBundle,
} from "@tessera/identity/validation-bundle";
import {
  type CompletionTerms,
  CompletionTermsSchema,
  type ComputeCompletion,
  ComputeCompletionSchema,
  type PreprocessingTerms,
  type PreprocessingValidation,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { ExecutionEvidence } from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import { ValidationError } from "./errors.js";
import type { CompletionExecutorRegistry } from "./executors.js";
import { paymentTreeDifference } from "./payment-tree.js";
import type { ValidationPolicy } from "./policy.js";
import { PROTOCOL_VERSION, protocolVersionProblem } from "./protocol-version.js";
import { routeDifference } from "./route.js";
import type { ValidatorSet } from "./sources.js";

/** The verdict on a piece of finished work. */
export interface CompletionVerdict {
  /** Whether payment is approved. */
  readonly approved: boolean;
  /** Why the work was rejected, or what was checked when approved. */
  readonly reason: string;
}

/** A verdict with the checked completion and the approved terms it ran under. */
export interface CompletionJudgement extends CompletionVerdict {
  readonly completion: ComputeCompletion;
  readonly approvedTerms: PreprocessingTerms;
}

/** What {@link judgeCompletion} checks. */
export interface CompletionCase {
  readonly completion: ComputeCompletion | undefined;
  readonly preprocessing: PreprocessingValidation | undefined;
  readonly evidence: ExecutionEvidence | undefined;
  readonly validatorSet: ValidatorSet;
  readonly executors: CompletionExecutorRegistry;
  readonly policy: ValidationPolicy;
  readonly now: Date;
  readonly signal: AbortSignal;
}

/**
 * Checks a completion request and judges the work.
 * @throws ValidationError for a request-level problem (see the module comment); unavailable when
 * an executor that supports the work cannot reach a verdict.
 */
export async function judgeCompletion(input: CompletionCase): Promise<CompletionJudgement> {
  const { preprocessing, policy } = input;
  const terms = checkCompletionRequest(input.completion, preprocessing, input.validatorSet, policy);
  // checkCompletionRequest threw unless the completion and its completed_at are present.
  const completion = input.completion as ComputeCompletion;
  const completedAt = completion.completedAt as Timestamp;
  if (timestampMs(completedAt) > input.now.getTime() + policy.clockSkewMs) {
    throw new ValidationError("failed_precondition", "the completion is dated in the future");
  }
  const verdict = await judgeWork(completion, terms, input);
  return { ...verdict, completion, approvedTerms: terms };
}

async function judgeWork(
  completion: ComputeCompletion,
  terms: PreprocessingTerms,
  input: CompletionCase,
): Promise<CompletionVerdict> {
  const evidence = input.evidence;
  if (evidence === undefined) return { approved: true, reason: "signatures verified" };
  const hashProblem = resultHashProblem(completion.resultHash, evidence);
  if (hashProblem !== undefined) return { approved: false, reason: hashProblem };

  const task = {
    requestId: completion.requestId,
    modelId: terms.modelId,
    subnetId: terms.subnetId,
    computeNodeAddress: completion.computeNodeAddress,
    resultHash: completion.resultHash,
    evidence,
  };
  const executor = input.executors.find(task);
  if (executor === undefined) return { approved: true, reason: "result hash verified" };
  let verdict: Awaited<ReturnType<typeof executor.reexecute>>;
  try {
    verdict = await executor.reexecute(task, input.signal);
  } catch (error) {
    input.signal.throwIfAborted();
    throw new ValidationError(
      "unavailable",
      `executor ${executor.name} could not re-execute the work: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return verdict.agrees
    ? { approved: true, reason: `re-executed by ${executor.name}` }
    : {
        approved: false,
        reason: `re-execution by ${executor.name} disagrees${verdict.reason ? `: ${verdict.reason}` : ""}`,
      };
}

/**
 * The request-level checks of a completion (cheap, no re-execution): well-formed, signed by the
 * routed node, for the approved request, finished within the approval's expiry, and the approval
 * carries M valid validator signatures. Returns the approved terms.
 * @throws ValidationError naming the failed check.
 */
export function checkCompletionRequest(
  completion: ComputeCompletion | undefined,
  preprocessing: PreprocessingValidation | undefined,
  validatorSet: ValidatorSet,
  policy: ValidationPolicy,
): PreprocessingTerms {
  const invalid = (what: string) => new ValidationError("invalid_argument", what);
  const precondition = (what: string) => new ValidationError("failed_precondition", what);
  if (completion === undefined) throw invalid("compute_completion is missing");
  if (preprocessing?.terms === undefined) throw invalid("preprocessing_validation is missing");
  const terms = preprocessing.terms;
  const version = protocolVersionProblem(completion.protocolVersion);
  if (version !== undefined) throw precondition(`compute_completion: ${version}`);
  if (!isAddress(completion.computeNodeAddress)) {
    throw invalid("compute_completion.compute_node_address is not a valid address");
  }
  if (completion.resultHash.length !== 32) {
    throw invalid("compute_completion.result_hash must be 32 bytes (SHA-256)");
  }
  if (completion.completedAt === undefined)
    throw invalid("compute_completion.completed_at is missing");
  if (!verifyComputeCompletion(completion)) {
    throw new ValidationError(
      "unauthenticated",
      "the compute node's signature over the completion does not verify",
    );
  }
  if (completion.requestId !== terms.requestId) {
    throw precondition("the completion's request_id differs from the approval's");
  }
  if (completion.computeNodeAddress !== terms.route?.computeNodeAddress) {
    throw precondition("the completion is not by the compute node of the approved route");
  }
  const bundle = verifyValidationBundle(preprocessing, {
    validators: validatorSet.validators.map((v) => ({
      address: v.address,
      publicKey: v.publicKey,
    })),
    quorum: validatorSet.quorum,
  });
  if (!bundle.valid) {
    throw precondition(`the preprocessing approval is invalid: ${bundle.reason}`);
  }
  const expiresMs = terms.expiresAt === undefined ? 0 : timestampMs(terms.expiresAt);
  const completedMs = timestampMs(completion.completedAt);
  if (completedMs > expiresMs + policy.clockSkewMs) {
    throw precondition("the work finished after the preprocessing approval expired");
  }
  return terms;
}

function resultHashProblem(
  resultHash: Uint8Array,
  evidence: ExecutionEvidence,
): string | undefined {
  const result = evidence.result;
  if (result.case === "resultData") {
    if (!bytesEqual(sha256(result.value), resultHash)) {
      return "the result does not hash to the signed result_hash";
    }
  } else if (result.case === "resultRef") {
    if (result.value.digest !== `sha256:${toHex(resultHash)}`) {
      return "the result reference's digest is not the signed result_hash";
    }
  }
  return undefined;
}

/** The completion terms for `verdict` on `completion` under the approved `preprocessing` terms. */
export function buildCompletionTerms(
  completion: ComputeCompletion,
  preprocessing: PreprocessingTerms,
  approved: boolean,
): CompletionTerms {
  return create(CompletionTermsSchema, {
    protocolVersion: PROTOCOL_VERSION,
    requestId: completion.requestId,
    computeCompletion: completion,
    ...(preprocessing.route === undefined ? {} : { route: preprocessing.route }),
    ...(preprocessing.paymentTree === undefined ? {} : { paymentTree: preprocessing.paymentTree }),
    approved,
  });
}

/**
 * A validator's comparison of proposed completion terms with the ones it derives. Throws
 * ValidationError(failed_precondition) naming the first difference; a different verdict reads
 * "verdict differs: ...".
 */
export function checkCompletionTerms(
  proposed: CompletionTerms,
  expected: CompletionTerms,
  verdict: CompletionVerdict,
): void {
  const disagree = (what: string) => new ValidationError("failed_precondition", what);
  const version = protocolVersionProblem(proposed.protocolVersion);
  if (version !== undefined) throw disagree(`terms: ${version}`);
  if (proposed.requestId !== expected.requestId) throw disagree("terms.request_id differs");
  const completionSame =
    proposed.computeCompletion !== undefined &&
    expected.computeCompletion !== undefined &&
    equals(ComputeCompletionSchema, proposed.computeCompletion, expected.computeCompletion);
  if (!completionSame) throw disagree("terms.compute_completion differs");
  const routeDiff = routeDifference(expected.route, proposed.route);
  if (routeDiff !== undefined) throw disagree(`terms.${routeDiff} differs from the approval`);
  if (proposed.paymentTree === undefined || expected.paymentTree === undefined) {
    throw disagree("terms.payment_tree is missing");
  }
  const treeDiff = paymentTreeDifference(expected.paymentTree, proposed.paymentTree);
  if (treeDiff !== undefined) {
    throw disagree(`terms.payment_tree.${treeDiff} differs from the approval`);
  }
  if (proposed.approved !== verdict.approved) {
    throw disagree(
      `verdict differs: this validator ${verdict.approved ? "approves" : "rejects"} the work (${verdict.reason})`,
    );
  }
}
