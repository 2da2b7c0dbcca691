/**
 * What the node can take on: its job slots, its memory budget, its runtimes and devices, and the
 * limits each job runs under. Pure: the agent asks it before accepting an assignment.
 */
import { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { JobSpec } from "@tessera/proto/tessera/job/v1/job_pb.js";

/** The node's capacity. */
export interface Capacity {
  /** Jobs that may run at once. */
  readonly maxConcurrentJobs: number;
  /** Memory all running jobs may use together, in bytes. */
  readonly memoryBudgetBytes: number;
  /** Time limit of a job whose spec sets none. */
  readonly defaultJobDurationMs: number;
  /** Runtimes the executors provide. */
  readonly runtimes: readonly string[];
  /** Device kinds the executors can run a job on. */
  readonly deviceTypes: readonly DeviceType[];
}

/** The limits one job runs under. */
export interface JobLimits {
  /** Resident memory the job's process may reach. */
  readonly maxMemoryBytes: number;
  /** Wall-clock time the job's process may run. */
  readonly maxDurationMs: number;
}

/**
 * The limits of a job: its declared `max_memory_bytes` and `max_duration_ms`, or, where it
 * declares none (0), an equal share of the memory budget per slot and the node's default time.
 */
export function jobLimits(spec: JobSpec, capacity: Capacity): JobLimits {
  const declaredMemory = Number(spec.maxMemoryBytes);
  const declaredDuration = Number(spec.maxDurationMs);
  return {
    maxMemoryBytes:
      declaredMemory > 0
        ? declaredMemory
        : Math.floor(capacity.memoryBudgetBytes / capacity.maxConcurrentJobs),
    maxDurationMs: declaredDuration > 0 ? declaredDuration : capacity.defaultJobDurationMs,
  };
}

/** What is in use now. */
export interface Usage {
  /** Jobs holding a slot (accepted or being accepted). */
  readonly runningJobs: number;
  /** Sum of the memory limits of those jobs. */
  readonly reservedMemoryBytes: number;
}

/**
 * Why the node refuses a job now, in words for NotifyJobAccepted.reject_reason, or undefined when
 * it can take it: no free slot, a runtime or device it does not have, or more memory than its
 * budget has left.
 */
export function refusalReason(spec: JobSpec, capacity: Capacity, usage: Usage): string | undefined {
  if (usage.runningJobs >= capacity.maxConcurrentJobs) {
    return `no free slot (${usage.runningJobs} of ${capacity.maxConcurrentJobs} jobs running)`;
  }
  if (spec.requiredRuntime !== "" && !capacity.runtimes.includes(spec.requiredRuntime)) {
    return `runtime ${JSON.stringify(spec.requiredRuntime)} is not offered (offered: ${capacity.runtimes.join(", ")})`;
  }
  if (
    spec.requiredDevice !== DeviceType.UNSPECIFIED &&
    !capacity.deviceTypes.includes(spec.requiredDevice)
  ) {
    return `device ${DeviceType[spec.requiredDevice] ?? spec.requiredDevice} is not available`;
  }
  const { maxMemoryBytes } = jobLimits(spec, capacity);
  const left = capacity.memoryBudgetBytes - usage.reservedMemoryBytes;
  if (maxMemoryBytes > left) {
    return `the job's memory limit of ${maxMemoryBytes} bytes exceeds the ${Math.max(0, left)} bytes this node has free for jobs`;
  }
  return undefined;
}
