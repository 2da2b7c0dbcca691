/**
 * How observations move a node's and a validator's standing. Pure functions: the directory
 * stores what they return.
 *
 * Reputation lives in [0, 1] and starts at 0.5. Good news moves it a fraction of the way to 1,
 * bad news a fraction of the way to 0, so no single event can pin it at either end and recent
 * behaviour counts more than old behaviour. Failed validations and abandoned jobs are strikes;
 * every `strikesPerBan`-th strike bans the node for the next of `banPeriodsMs` (CyxWiz: 24 h,
 * 48 h, then 168 h for every later ban).
 */
import { NodeEventKind } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";

/** Reputation of a node or validator the registry has not observed yet. */
export const INITIAL_REPUTATION = 0.5;

/** Default ban periods: 24 h, 48 h, then 168 h for each later ban. */
export const DEFAULT_BAN_PERIODS_MS: readonly number[] = [
  24 * 3_600_000,
  48 * 3_600_000,
  168 * 3_600_000,
];

/** Default strikes that earn one ban. */
export const DEFAULT_STRIKES_PER_BAN = 3;

/** When strikes turn into bans. */
export interface BanPolicy {
  /** Every this many strikes, the node is banned. At least 1. */
  readonly strikesPerBan: number;
  /** Length of the first, second, ... ban; the last one repeats. At least one entry. */
  readonly banPeriodsMs: readonly number[];
}

/** The part of a node's standing that events change. */
export interface NodeCounters {
  readonly reputation: number;
  readonly strikes: number;
  /** Bans served or being served. */
  readonly bans: number;
  readonly bannedUntilMs: number | null;
  readonly jobsCompleted: number;
  readonly computeMs: number;
}

/** One node event as the reputation rules see it. */
export interface NodeEventEffect {
  readonly kind: NodeEventKind;
  /** For JOB_COMPLETED: compute time spent, in milliseconds. */
  readonly computeTimeMs: number;
}

/** The counters after an event, and whether the event started a ban. */
export interface NodeEventOutcome {
  readonly counters: NodeCounters;
  readonly banStarted: boolean;
}

const RISE = {
  [NodeEventKind.VALIDATION_PASSED]: 0.05,
  [NodeEventKind.JOB_COMPLETED]: 0.02,
} as Partial<Record<NodeEventKind, number>>;

const FALL = {
  [NodeEventKind.VALIDATION_FAILED]: 0.2,
  [NodeEventKind.VALIDATION_TIMED_OUT]: 0.05,
  [NodeEventKind.JOB_ABANDONED]: 0.1,
} as Partial<Record<NodeEventKind, number>>;

const STRIKES = new Set<NodeEventKind>([
  NodeEventKind.VALIDATION_FAILED,
  NodeEventKind.JOB_ABANDONED,
]);

/**
 * Applies one event at `nowMs`. Throws RangeError for NODE_EVENT_KIND_UNSPECIFIED or an unknown
 * kind (the caller validates input first).
 */
export function applyNodeEvent(
  counters: NodeCounters,
  event: NodeEventEffect,
  nowMs: number,
  policy: BanPolicy,
): NodeEventOutcome {
  const rise = RISE[event.kind];
  const fall = FALL[event.kind];
  if (rise === undefined && fall === undefined) {
    throw new RangeError(`unknown node event kind ${event.kind}`);
  }
  let { reputation, strikes, bans, bannedUntilMs, jobsCompleted, computeMs } = counters;
  if (rise !== undefined) reputation = clamp01(reputation + (1 - reputation) * rise);
  if (fall !== undefined) reputation = clamp01(reputation - reputation * fall);
  if (event.kind === NodeEventKind.JOB_COMPLETED) {
    jobsCompleted += 1;
    computeMs += Math.max(0, event.computeTimeMs);
  }
  let banStarted = false;
  if (STRIKES.has(event.kind)) {
    strikes += 1;
    if (strikes % Math.max(1, policy.strikesPerBan) === 0) {
      const periods = policy.banPeriodsMs;
      const periodMs = periods[Math.min(bans, periods.length - 1)] ?? 0;
      bans += 1;
      bannedUntilMs = Math.max(bannedUntilMs ?? 0, nowMs + periodMs);
      banStarted = true;
    }
  }
  return {
    counters: { reputation, strikes, bans, bannedUntilMs, jobsCompleted, computeMs },
    banStarted,
  };
}

/** What a validator did when asked to sign. */
export type ValidatorEvent = "ok" | "timeout" | "invalid_signature";

const VALIDATOR_STEP: Readonly<Record<ValidatorEvent, number>> = {
  ok: 0.05,
  timeout: -0.1,
  invalid_signature: -0.25,
};

/** A validator's reputation after `event`: a signature that counted raises it, failures lower it. */
export function applyValidatorEvent(reputation: number, event: ValidatorEvent): number {
  const step = VALIDATOR_STEP[event];
  return clamp01(step > 0 ? reputation + (1 - reputation) * step : reputation + reputation * step);
}

function clamp01(value: number): number {
  return Math.min(1, Math.max(0, value));
}
