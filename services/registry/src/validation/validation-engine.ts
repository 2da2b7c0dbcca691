/**
 * The registry role of validation (ValidationService): builds the terms of a request, fans them
 * out to the active validators, and returns once M of them signed. Approvals are stored, so a
 * repeated request gets the same approval back (preprocessing: while unexpired; completion:
 * always), and the completion verdict is recorded in the node's standing once.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { sha3_256, toHex } from "@tessera/identity/hash";
import {
  type CompletionTerms,
  type CompletionValidation,
  CompletionValidationSchema,
  ComputeCompletionSchema,
  type PreprocessingTerms,
  PreprocessingTermsSchema,
  type PreprocessingValidation,
  PreprocessingValidationSchema,
  type ValidatorSignature,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import type {
  NodeEntry,
  ValidatorInfo,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import {
  type WorkDescription,
  WorkDescriptionSchema,
} from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import type {
  RequestCompletionValidationRequest,
  RequestPreprocessingValidationRequest,
} from "@tessera/proto/tessera/registry/v1/validation_service_pb.js";
import {
  type SignCompletionRequest,
  SignCompletionRequestSchema,
  type SignPreprocessingRequest,
  SignPreprocessingRequestSchema,
} from "@tessera/proto/tessera/registry/v1/validator_service_pb.js";
import type { ApprovalStore, StoredApproval } from "./approval-store.js";
import {
  buildCompletionTerms,
  type CompletionVerdict,
  checkCompletionRequest,
  judgeCompletion,
} from "./completion.js";
import { ValidationError } from "./errors.js";
import { type CompletionExecutorRegistry, createCompletionExecutorRegistry } from "./executors.js";
import {
  gatherSignatures,
  QuorumNotReachedError,
  type ValidatorOutcome,
  type ValidatorReply,
} from "./fan-out.js";
import type { ValidationPolicy } from "./policy.js";
import {
  buildPreprocessingTerms,
  type SubnetFacts,
  subnetFacts,
  workProblem,
} from "./preprocessing.js";
import { maxPriceOf } from "./pricing.js";
import { PROTOCOL_VERSION, protocolVersionProblem } from "./protocol-version.js";
import { routeProblem } from "./route.js";
import type { RegistryValidationSources, ValidatorSet } from "./sources.js";

/** How the engine reaches one validator's ValidatorService (the transport adapter). */
export interface ValidatorCaller {
  signPreprocessing(
    validator: ValidatorInfo,
    request: SignPreprocessingRequest,
    signal: AbortSignal,
  ): Promise<ValidatorReply>;
  signCompletion(
    validator: ValidatorInfo,
    request: SignCompletionRequest,
    signal: AbortSignal,
  ): Promise<ValidatorReply>;
}

/** Options of {@link createValidationEngine}. */
export interface ValidationEngineOptions {
  readonly sources: RegistryValidationSources;
  readonly approvals: ApprovalStore;
  readonly policy: ValidationPolicy;
  readonly validators: ValidatorCaller;
  /** How long each validator gets to answer, in milliseconds; default 5000. */
  readonly validatorTimeoutMs?: number | undefined;
  /** The registry's own re-execution hook, to propose the verdict validators will reach; default none. */
  readonly executors?: CompletionExecutorRegistry | undefined;
  /** Wall clock; default `() => new Date()`. */
  readonly clock?: (() => Date) | undefined;
  /** Told about failures of background work (reputation reports, node verdicts); default ignores. */
  readonly onBackgroundError?: ((error: unknown, what: string) => void) | undefined;
}

/** The registry role's validation engine. */
export interface ValidationEngine {
  /**
   * Approves a route and a price for `request.work`, asked by `caller` (the signed caller, which
   * must be the work's gateway and known to the registry).
   * @throws ValidationError (see errors.ts for the codes).
   */
  requestPreprocessing(
    request: RequestPreprocessingValidationRequest,
    caller: string,
    signal: AbortSignal,
  ): Promise<PreprocessingValidation>;
  /**
   * Judges finished work and returns the M-of-N verdict (`terms.approved`).
   * @throws ValidationError (see errors.ts for the codes).
   */
  requestCompletion(
    request: RequestCompletionValidationRequest,
    caller: string,
    signal: AbortSignal,
  ): Promise<CompletionValidation>;
  /** Resolves once every validator call still running in the background has finished. */
  idle(): Promise<void>;
}

/** A {@link ValidationEngine}. */
export function createValidationEngine(options: ValidationEngineOptions): ValidationEngine {
  const { sources, approvals, policy } = options;
  const timeoutMs = options.validatorTimeoutMs ?? 5000;
  const executors = options.executors ?? createCompletionExecutorRegistry();
  const clock = options.clock ?? (() => new Date());
  const background = new Set<Promise<unknown>>();
  const onBackgroundError = options.onBackgroundError ?? (() => {});

  const track = (settled: Promise<readonly ValidatorOutcome[]>) => {
    background.add(settled);
    void settled.finally(() => background.delete(settled));
  };

  const checkCaller = async (caller: string) => {
    if (!(await sources.isKnownRouter(caller))) {
      throw new ValidationError(
        "permission_denied",
        `${caller} is not a gateway, job server or compute node known to the registry`,
      );
    }
  };

  const activeValidators = async (): Promise<ValidatorSet> => {
    const set = await sources.getValidatorSet();
    if (set.validators.length < set.quorum) {
      throw new ValidationError(
        "unavailable",
        `${set.validators.length} active validator(s), ${set.quorum} signatures required`,
      );
    }
    return set;
  };

  const gather = async (
    set: ValidatorSet,
    terms: PreprocessingTerms | CompletionTerms,
    call: (validator: ValidatorInfo, signal: AbortSignal) => Promise<ValidatorReply>,
    signal: AbortSignal,
  ) => {
    try {
      const gathered = await gatherSignatures({
        validators: set.validators,
        quorum: set.quorum,
        terms,
        timeoutMs,
        signal,
        call,
        report: (address, event) => sources.reportValidatorEvent(address, event),
        onReportError: (error, address) => onBackgroundError(error, `reputation of ${address}`),
      });
      track(gathered.settled);
      return gathered.signatures;
    } catch (error) {
      if (error instanceof QuorumNotReachedError) track(error.settled);
      throw error;
    }
  };

  return {
    async requestPreprocessing(request, caller, signal) {
      const version = protocolVersionProblem(request.protocolVersion);
      if (version !== undefined) throw new ValidationError("failed_precondition", version);
      const problem = workProblem(request.work);
      if (problem !== undefined || request.work === undefined) {
        throw new ValidationError("invalid_argument", problem ?? "work is missing");
      }
      const work = request.work;
      if (work.gatewayAddress !== caller) {
        throw new ValidationError(
          "permission_denied",
          "work.gateway_address must be the signed caller",
        );
      }
      await checkCaller(caller);
      maxPriceOf(work);
      // The work's identity leaves out the proposed node: asking again with another node is the
      // same work, re-routed (see below), not different work under a reused id.
      const requestHash = toHex(
        sha3_256(toBinary(WorkDescriptionSchema, { ...work, computeNodeAddress: "" })),
      );
      const now = clock();
      const existing = await approvals.get("preprocessing", work.requestId);
      let replaces: StoredApproval | undefined;
      if (existing?.expiresAt !== undefined && existing.expiresAt > now) {
        if (existing.requestHash !== requestHash) {
          throw new ValidationError(
            "already_exists",
            `request ${work.requestId} already has an approval for different work`,
          );
        }
        const approved = fromBinary(PreprocessingValidationSchema, existing.bundle);
        // An unexpired approval stands while its node can still do the work. Once that node is
        // offline or banned the work would be stuck on it until expiry, so the router may have it
        // re-routed: a fresh approval replaces the old one (the escrow is released only against
        // the completion of the route it names).
        if (!(await routeLapsed(approved, work, now))) return approved;
        replaces = existing;
      }

      const subnet = await subnetFacts(sources, work.subnetId, work.modelId, policy);
      const set = await activeValidators();
      const expiresAt = new Date(now.getTime() + policy.approvalTtlMs);
      const terms = await proposeRoute(work, subnet, set, expiresAt, now);
      const signatures = await gather(
        set,
        terms,
        (validator, callSignal) =>
          options.validators.signPreprocessing(
            validator,
            create(SignPreprocessingRequestSchema, {
              protocolVersion: PROTOCOL_VERSION,
              work,
              terms,
            }),
            callSignal,
          ),
        signal,
      );
      const bundle = create(PreprocessingValidationSchema, {
        terms,
        validatorSignatures: [...signatures],
      });
      const approval = {
        requestHash,
        bundle: toBinary(PreprocessingValidationSchema, bundle),
        expiresAt,
      };
      const stored =
        replaces === undefined
          ? await approvals.put("preprocessing", work.requestId, approval, clock())
          : await approvals.replace("preprocessing", work.requestId, replaces, approval);
      if (stored.requestHash !== requestHash) {
        throw new ValidationError(
          "already_exists",
          `request ${work.requestId} already has an approval for different work`,
        );
      }
      return fromBinary(PreprocessingValidationSchema, stored.bundle);
    },

    async requestCompletion(request, caller, signal) {
      const version = protocolVersionProblem(request.protocolVersion);
      if (version !== undefined) throw new ValidationError("failed_precondition", version);
      await checkCaller(caller);
      const completion = request.computeCompletion;
      const preprocessing = request.preprocessingValidation;
      if (completion === undefined || preprocessing?.terms === undefined) {
        throw new ValidationError(
          "invalid_argument",
          completion === undefined
            ? "compute_completion is missing"
            : "preprocessing_validation is missing",
        );
      }
      const set = await sources.getValidatorSet();
      const approvedTerms = checkCompletionRequest(completion, preprocessing, set, policy);
      const requestHash = toHex(
        sha3_256(
          new Uint8Array([
            ...toBinary(ComputeCompletionSchema, completion),
            ...toBinary(PreprocessingTermsSchema, approvedTerms),
          ]),
        ),
      );
      const existing = await approvals.get("completion", completion.requestId);
      if (existing !== undefined) {
        if (existing.requestHash !== requestHash) {
          throw new ValidationError(
            "already_exists",
            `request ${completion.requestId} already has a completion verdict for another completion`,
          );
        }
        return fromBinary(CompletionValidationSchema, existing.bundle);
      }

      const verdict = await judgeCompletion({
        completion,
        preprocessing,
        evidence: request.evidence,
        validatorSet: set,
        executors,
        policy,
        now: clock(),
        signal,
      });
      await activeValidators();
      const propose = (approved: boolean) => {
        const terms = buildCompletionTerms(completion, approvedTerms, approved);
        const signRequest = create(SignCompletionRequestSchema, {
          protocolVersion: PROTOCOL_VERSION,
          terms,
          preprocessingValidation: preprocessing,
          ...(request.evidence === undefined ? {} : { evidence: request.evidence }),
        });
        return gather(
          set,
          terms,
          (validator, callSignal) =>
            options.validators.signCompletion(validator, signRequest, callSignal),
          signal,
        ).then((signatures) => ({ terms, signatures }));
      };
      let outcome: { terms: CompletionTerms; signatures: readonly ValidatorSignature[] };
      let final: CompletionVerdict = verdict;
      try {
        outcome = await propose(verdict.approved);
      } catch (error) {
        // Validators that re-execute may reach the other verdict; when a quorum of them says so,
        // their verdict is the network's.
        if (
          !(error instanceof QuorumNotReachedError) ||
          error.kind !== "failed_precondition" ||
          !quorumDisagrees(await error.settled, set.quorum)
        ) {
          throw error;
        }
        final = { approved: !verdict.approved, reason: "validators reached the other verdict" };
        outcome = await propose(final.approved);
      }
      const bundle = create(CompletionValidationSchema, {
        terms: outcome.terms,
        validatorSignatures: [...outcome.signatures],
      });
      const stored = await approvals.put(
        "completion",
        completion.requestId,
        { requestHash, bundle: toBinary(CompletionValidationSchema, bundle), expiresAt: undefined },
        clock(),
      );
      if (stored.requestHash !== requestHash) {
        throw new ValidationError(
          "already_exists",
          `request ${completion.requestId} already has a completion verdict for another completion`,
        );
      }
      const result = fromBinary(CompletionValidationSchema, stored.bundle);
      try {
        await sources.reportNodeVerdict(
          completion.computeNodeAddress,
          result.terms?.approved ? "validation_passed" : "validation_failed",
          {
            eventId: `completion:${completion.requestId}`,
            requestId: completion.requestId,
            detail: final.reason,
          },
        );
      } catch (error) {
        onBackgroundError(error, `verdict of node ${completion.computeNodeAddress}`);
      }
      return result;
    },

    async idle() {
      while (background.size > 0) await Promise.allSettled([...background]);
    },
  };

  /** Whether the node an unexpired approval routes `work` to can no longer run it. */
  async function routeLapsed(
    approved: PreprocessingValidation,
    work: WorkDescription,
    now: Date,
  ): Promise<boolean> {
    const node = approved.terms?.route?.computeNodeId ?? "";
    if (node === "" || node === work.computeNodeAddress) return false;
    const entry = await sources.getNode(node);
    return (
      routeProblem(entry, {
        kind: work.kind,
        modelId: work.modelId,
        subnetId: work.subnetId,
        now,
        minPowDifficulty: policy.minPowDifficulty,
      }) !== undefined
    );
  }

  async function proposeRoute(
    work: WorkDescription,
    subnet: SubnetFacts,
    set: ValidatorSet,
    expiresAt: Date,
    now: Date,
  ): Promise<PreprocessingTerms> {
    const requirements = {
      kind: work.kind,
      modelId: work.modelId,
      subnetId: work.subnetId,
      now,
      minPowDifficulty: policy.minPowDifficulty,
    };
    const validatorAddresses = set.validators.map((v) => v.address).sort();
    const termsFor = (node: NodeEntry) =>
      buildPreprocessingTerms({ work, node, subnet, validatorAddresses, expiresAt, policy });

    if (work.computeNodeAddress !== "") {
      const node = await sources.getNode(work.computeNodeAddress);
      if (node === undefined) {
        throw new ValidationError("not_found", `node ${work.computeNodeAddress} is not registered`);
      }
      const problem = routeProblem(node, requirements);
      if (problem !== undefined) throw new ValidationError("failed_precondition", problem);
      return termsFor(node);
    }
    const candidates = (await sources.findComputeNodes(requirements)).filter(
      (node) => routeProblem(node, requirements) === undefined,
    );
    if (candidates.length === 0) {
      throw new ValidationError(
        "unavailable",
        `no online compute node hosts model "${work.modelId}" in subnet ${work.subnetId}`,
      );
    }
    let overPrice: ValidationError | undefined;
    for (const node of candidates) {
      try {
        return termsFor(node);
      } catch (error) {
        if (!(error instanceof ValidationError) || error.kind !== "failed_precondition")
          throw error;
        overPrice ??= error;
      }
    }
    throw new ValidationError(
      "failed_precondition",
      `no qualifying compute node is within max_price ${work.maxPrice} (${overPrice?.message ?? ""})`,
    );
  }
}

const VERDICT_DIFFERS = "verdict differs";

function quorumDisagrees(outcomes: readonly ValidatorOutcome[], quorum: number): boolean {
  const differing = outcomes.filter(
    (o) => o.outcome === "refused" && (o.reason ?? "").includes(VERDICT_DIFFERS),
  );
  return differing.length >= quorum;
}
