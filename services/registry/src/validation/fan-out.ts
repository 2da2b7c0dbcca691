/**
 * M-of-N signature gathering: propose the same terms to every active validator at once, keep the
 * first M valid signatures, and record what each validator did for its reputation.
 *
 * - Each validator gets `timeoutMs` to answer; one that does not (or cannot be reached) is
 *   reported `timeout`, one that returns a signature that is not its own valid signature over the
 *   terms is reported `invalid_signature`, one that signs is reported `ok`. A validator that
 *   refuses (its own check disagrees) is not penalized: disagreeing is its job.
 * - The gathering resolves as soon as M signatures are in, and fails as soon as M can no longer be
 *   reached. Validators still working then keep their own timeout (so a slow validator is still
 *   caught and reported), but the caller does not wait for them: `settled` resolves when they are
 *   all done and reported.
 * - The caller's signal cancels the calls still running before the outcome; cancelled validators
 *   are not penalized.
 */

import { type SignedTerms, verifyValidatorSignature } from "@tessera/identity/validation-bundle";
import type { ValidatorSignature } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { ValidatorInfo } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { ValidationError } from "./errors.js";
import type { ValidatorEvent } from "./sources.js";

/** A validator's answer to one proposal, as the transport adapter saw it. */
export type ValidatorReply =
  | { readonly kind: "signed"; readonly signature: ValidatorSignature }
  /** The validator answered with an error (its check disagreed, or it refused the caller). */
  | { readonly kind: "refused"; readonly reason: string }
  /** The call failed in transport (connection refused, reset, protocol error). */
  | { readonly kind: "unreachable"; readonly reason: string };

/** Proposes the terms to one validator; must stop when `signal` aborts. Never rejects. */
export type ValidatorCall = (
  validator: ValidatorInfo,
  signal: AbortSignal,
) => Promise<ValidatorReply>;

/** What happened with one validator. */
export interface ValidatorOutcome {
  readonly address: string;
  readonly outcome:
    | "signed"
    | "refused"
    | "timeout"
    | "unreachable"
    | "invalid_signature"
    | "cancelled";
  /** Why, for refusals and failures (the validator's message, never signature bytes). */
  readonly reason?: string | undefined;
}

/** Options of {@link gatherSignatures}. */
export interface GatherOptions {
  /** The N validators to ask (active, with endpoints and keys). */
  readonly validators: readonly ValidatorInfo[];
  /** M: signatures needed; 1 <= M. */
  readonly quorum: number;
  /** The terms every validator is asked to sign. */
  readonly terms: SignedTerms;
  /** How long each validator gets to answer, in milliseconds. */
  readonly timeoutMs: number;
  /** The caller's signal (its deadline or cancellation). */
  readonly signal: AbortSignal;
  /** Sends the proposal to one validator. */
  readonly call: ValidatorCall;
  /** Records a validator's reputation event; failures go to `onReportError`. */
  readonly report: (address: string, event: ValidatorEvent) => Promise<void>;
  /** Told about a failed `report` (log it); default ignores. */
  readonly onReportError?: ((error: unknown, address: string) => void) | undefined;
}

/** A reached quorum. */
export interface Gathered {
  /** The first M valid signatures, in arrival order. */
  readonly signatures: readonly ValidatorSignature[];
  /** Resolves, never rejects, once every validator answered or timed out and was reported. */
  readonly settled: Promise<readonly ValidatorOutcome[]>;
}

/** Thrown by {@link gatherSignatures} below quorum; `settled` as in {@link Gathered}. */
export class QuorumNotReachedError extends ValidationError {
  readonly outcomes: readonly ValidatorOutcome[];
  readonly settled: Promise<readonly ValidatorOutcome[]>;
  constructor(
    kind: "unavailable" | "failed_precondition" | "deadline_exceeded",
    message: string,
    outcomes: readonly ValidatorOutcome[],
    settled: Promise<readonly ValidatorOutcome[]>,
  ) {
    super(kind, message);
    this.name = "QuorumNotReachedError";
    this.outcomes = outcomes;
    this.settled = settled;
  }
}

const TIMED_OUT = Symbol("timed out");
const CANCELLED = Symbol("cancelled");

/**
 * Asks every validator in parallel and resolves with M signatures.
 * @throws QuorumNotReachedError: failed_precondition when refusals alone make M unreachable (the
 * message quotes them), deadline_exceeded when the caller's signal ended it, unavailable otherwise
 * (too few validators, timeouts, unreachable ones; the message names each).
 */
export function gatherSignatures(options: GatherOptions): Promise<Gathered> {
  const { validators, quorum, terms, timeoutMs, call, report } = options;
  if (!Number.isInteger(quorum) || quorum < 1) {
    throw new RangeError(`quorum must be a positive integer, got ${quorum}`);
  }
  const signatures: ValidatorSignature[] = [];
  const outcomes: ValidatorOutcome[] = [];
  const cancel = new AbortController();
  let decided = false;
  let settled: Promise<readonly ValidatorOutcome[]> = Promise.resolve([]);

  return new Promise<Gathered>((resolve, reject) => {
    const onCallerAbort = () => cancel.abort(CANCELLED);
    const fail = (
      kind: "unavailable" | "failed_precondition" | "deadline_exceeded",
      message: string,
    ) => {
      decided = true;
      options.signal.removeEventListener("abort", onCallerAbort);
      reject(new QuorumNotReachedError(kind, message, [...outcomes], settled));
    };
    const decide = () => {
      if (decided) return;
      if (signatures.length >= quorum) {
        decided = true;
        options.signal.removeEventListener("abort", onCallerAbort);
        resolve({ signatures: signatures.slice(0, quorum), settled });
        return;
      }
      const pending = validators.length - outcomes.length;
      if (signatures.length + pending >= quorum) return;
      const refused = outcomes.filter((o) => o.outcome === "refused");
      if (outcomes.some((o) => o.outcome === "cancelled")) {
        fail(
          "deadline_exceeded",
          `the call ended with ${signatures.length} of ${quorum} validator signatures`,
        );
      } else if (
        refused.length > 0 &&
        validators.length - refused.length < quorum &&
        validators.length >= quorum
      ) {
        fail(
          "failed_precondition",
          `validators refused the terms (${signatures.length} of ${quorum} signed): ${describe(refused)}`,
        );
      } else {
        const missing = outcomes.filter((o) => o.outcome !== "signed");
        fail(
          "unavailable",
          `${signatures.length} of ${quorum} required validator signatures (${validators.length} asked)${missing.length > 0 ? `: ${describe(missing)}` : ""}`,
        );
      }
    };

    if (options.signal.aborted) {
      fail("deadline_exceeded", "the call ended before validators were asked");
      return;
    }
    options.signal.addEventListener("abort", onCallerAbort, { once: true });

    const record = async (validator: ValidatorInfo) => {
      const outcome = await askOne(validator);
      outcomes.push(outcome);
      decide();
      const event = reputationEvent(outcome.outcome);
      if (event !== undefined) {
        try {
          await report(validator.address, event);
        } catch (error) {
          options.onReportError?.(error, validator.address);
        }
      }
      return outcome;
    };

    const askOne = async (validator: ValidatorInfo): Promise<ValidatorOutcome> => {
      const address = validator.address;
      const controller = new AbortController();
      const stop = (reason: symbol) => controller.abort(reason);
      const timer = setTimeout(() => stop(TIMED_OUT), timeoutMs);
      const onCancel = () => stop(CANCELLED);
      cancel.signal.addEventListener("abort", onCancel, { once: true });
      const aborted = new Promise<symbol>((resolveAbort) => {
        controller.signal.addEventListener(
          "abort",
          () => resolveAbort(controller.signal.reason as symbol),
          { once: true },
        );
      });
      try {
        const reply = await Promise.race([call(validator, controller.signal), aborted]);
        if (reply === TIMED_OUT) {
          return { address, outcome: "timeout", reason: `no answer within ${timeoutMs} ms` };
        }
        if (typeof reply === "symbol") return { address, outcome: "cancelled" };
        if (reply.kind === "refused") return { address, outcome: "refused", reason: reply.reason };
        if (reply.kind === "unreachable") {
          return { address, outcome: "unreachable", reason: reply.reason };
        }
        const signature = reply.signature;
        const own =
          signature.validatorAddress === address &&
          verifyValidatorSignature(
            terms,
            signature,
            validator.publicKey.length > 0 ? validator.publicKey : undefined,
          );
        if (!own) {
          return { address, outcome: "invalid_signature", reason: "signature does not verify" };
        }
        signatures.push(signature);
        return { address, outcome: "signed" };
      } catch (error) {
        return { address, outcome: "unreachable", reason: (error as Error).message };
      } finally {
        clearTimeout(timer);
        cancel.signal.removeEventListener("abort", onCancel);
      }
    };

    settled = Promise.all(validators.map(record));
    decide();
  });
}

function reputationEvent(outcome: ValidatorOutcome["outcome"]): ValidatorEvent | undefined {
  switch (outcome) {
    case "signed":
      return "ok";
    case "timeout":
    case "unreachable":
      return "timeout";
    case "invalid_signature":
      return "invalid_signature";
    default:
      return undefined;
  }
}

function describe(outcomes: readonly ValidatorOutcome[]): string {
  const shown = outcomes.slice(0, 5).map((o) => {
    const what = o.outcome === "refused" ? "refused" : o.outcome.replace("_", " ");
    return `${o.address} ${what}${o.reason ? ` (${o.reason})` : ""}`;
  });
  const more = outcomes.length > shown.length ? `; and ${outcomes.length - shown.length} more` : "";
  return shown.join("; ") + more;
}
