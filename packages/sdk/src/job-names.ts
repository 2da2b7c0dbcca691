/**
 * The names people type and read for the job enums: lowercase, words joined by "-"
 * (`training`, `completed`, `node-error`, `cuda`), the proto value names without their prefix.
 */
import { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  JobFailureReason,
  JobPriority,
  JobState,
  JobType,
  LogLevel,
} from "@tessera/proto/tessera/job/v1/job_pb.js";

type NumericEnum = Record<string, string | number>;

/** name -> value for every value of `enumObject` except UNSPECIFIED (0). */
function namesOf<E extends number>(enumObject: NumericEnum): ReadonlyMap<string, E> {
  return new Map(
    Object.entries(enumObject)
      .filter((entry): entry is [string, number] => typeof entry[1] === "number" && entry[1] !== 0)
      .map(([key, value]) => [key.toLowerCase().replaceAll("_", "-"), value as E]),
  );
}

function nameOf(enumObject: NumericEnum, value: number): string {
  const key = enumObject[value];
  if (typeof key !== "string") return `unknown(${value})`;
  return key.toLowerCase().replaceAll("_", "-");
}

/** `training`, `inference`, `evaluation`, `preprocessing`. */
export const JOB_TYPE_NAMES: ReadonlyMap<string, JobType> = namesOf(JobType);
/** `pending`, `queued`, `assigned`, `running`, `validating`, `completed`, `failed`, `cancelled`. */
export const JOB_STATE_NAMES: ReadonlyMap<string, JobState> = namesOf(JobState);
/** `low`, `normal`, `high`, `critical`. */
export const JOB_PRIORITY_NAMES: ReadonlyMap<string, JobPriority> = namesOf(JobPriority);
/** `cpu`, `cuda`, `opencl`, `metal`, `rocm`. */
export const DEVICE_TYPE_NAMES: ReadonlyMap<string, DeviceType> = namesOf(DeviceType);

/**
 * Looks `text` up in `names`, ignoring case and treating "_" like "-"; undefined when unknown.
 */
export function lookupName<E>(names: ReadonlyMap<string, E>, text: string): E | undefined {
  return names.get(text.trim().toLowerCase().replaceAll("_", "-"));
}

/** "training", ..., "unspecified" for 0, "unknown(<n>)" for a value this SDK does not know. */
export function jobTypeName(type: JobType): string {
  return nameOf(JobType, type);
}

/** "pending", ..., "completed", "failed", "cancelled"; "unspecified" for 0. */
export function jobStateName(state: JobState): string {
  return nameOf(JobState, state);
}

/** "node-error", "attempts-exhausted", ...; "unspecified" for 0. */
export function failureReasonName(reason: JobFailureReason): string {
  return nameOf(JobFailureReason, reason);
}

/** "debug", "info", "warning", "error"; UNSPECIFIED reads as "info". */
export function logLevelName(level: LogLevel): string {
  return level === LogLevel.UNSPECIFIED ? "info" : nameOf(LogLevel, level);
}

/** "cpu", "cuda", ...; "any" for UNSPECIFIED. */
export function deviceTypeName(device: DeviceType): string {
  return device === DeviceType.UNSPECIFIED ? "any" : nameOf(DeviceType, device);
}

/** The states a job never leaves: COMPLETED, FAILED and CANCELLED. */
export function isTerminalState(state: JobState): boolean {
  return state === JobState.COMPLETED || state === JobState.FAILED || state === JobState.CANCELLED;
}
