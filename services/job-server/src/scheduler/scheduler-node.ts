/**
 * What the scheduler knows of a compute node, and how to derive it from the node's signed record,
 * its observed standing and its latest load report.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type {
  DeviceType,
  NodeLoad,
  NodeRecord,
  NodeStanding,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { SchedulerInputError } from "./errors.js";

/** One compute device of a node as the scheduler sees it. */
export interface SchedulerDevice {
  /** The kind of device (tessera.common.v1.DeviceType). */
  readonly deviceType: DeviceType;
  /** Memory the device offers for new jobs, in bytes (see {@link SchedulerNode} for how it is counted). */
  readonly memoryBytes: bigint;
}

/**
 * A node the scheduler may place jobs on.
 *
 * Capacity accounting: `ramAvailableBytes` and each device's `memoryBytes` are what the node
 * offers as of its latest report. The scheduler subtracts the memory of every job it reserved on
 * the node, except jobs listed in `runningJobIds`: the node's own report already excludes what
 * its running jobs use. Slots: a node holds at most `maxConcurrentJobs` jobs, counting the
 * scheduler's reservations plus running jobs it did not reserve (e.g. leased by another replica).
 */
export interface SchedulerNode {
  /** The node's address (its id everywhere). */
  readonly address: string;
  /** Accelerators and CPUs; a node is eligible for a device-bound job only with such a device. */
  readonly devices: readonly SchedulerDevice[];
  /** RAM offered for new jobs, in bytes; host (UNSPECIFIED or CPU) jobs reserve from it. */
  readonly ramAvailableBytes: bigint;
  /** Runtimes the node offers, e.g. "onnxruntime", "tfjs", "tessera-data". */
  readonly runtimes: readonly string[];
  /** Asking price per hour of compute, in base units. */
  readonly pricePerHour: bigint;
  /** Reputation in [0, 1]. */
  readonly reputation: number;
  /** Share of time online since registration, in [0, 1]. */
  readonly uptimeRatio: number;
  /** Jobs the node holds at most at once (integer >= 0). */
  readonly maxConcurrentJobs: number;
  /** A banned node gets no jobs. Default false. */
  readonly banned?: boolean | undefined;
  /**
   * Whether the node is online. Default: true for a new node; an update without it keeps the
   * current value (see {@link Scheduler.setOnline}).
   */
  readonly online?: boolean | undefined;
  /** Whether clients can call the node directly (it has an endpoint). Default false. */
  readonly reachable?: boolean | undefined;
  /** Jobs the node reports running; see the capacity accounting above. Default none. */
  readonly runningJobIds?: readonly string[] | undefined;
}

/** Options of {@link schedulerNodeFrom}. */
export interface SchedulerNodeFromOptions {
  /** The time a ban is compared with; default now. */
  readonly now?: Date;
}

/** Reputation of a node the network has not observed yet (NodeStanding says new nodes start at 0.5). */
export const NEW_NODE_REPUTATION = 0.5;

const DECIMAL = /^[0-9]+$/;

/**
 * Parses a decimal string of base units ("" is 0).
 * @throws SchedulerInputError naming `field` when it is not a non-negative integer.
 */
export function parseBaseUnits(value: string, field: string): bigint {
  if (value === "") return 0n;
  if (!DECIMAL.test(value)) {
    throw new SchedulerInputError(field, `"${value}" is not a decimal amount of base units`);
  }
  return BigInt(value);
}

/**
 * The scheduler's view of a node from its record, standing and (optionally) latest load:
 * - devices and RAM: the load's devices and `ram_available_bytes` when a load is given (the
 *   load's devices only when it lists any); otherwise the record's devices (available memory,
 *   or total memory when the record leaves it 0) and `ram_total_bytes`;
 * - slots: `max_concurrent_jobs` (0 counts as 1), lowered to running + `free_slots` of the load,
 *   so the scheduler never holds more jobs on the node than it said it accepts;
 * - runningJobIds: the load's `active_job_ids`;
 * - price: `price_per_hour` ("" is 0); reputation, uptime and online from the standing (a node
 *   without standing: reputation 0.5, uptime 0, online); banned while `banned_until` is after now;
 * - reachable: the record's endpoint has a URL or host.
 * @throws SchedulerInputError("price_per_hour") when the price is not a decimal amount.
 */
export function schedulerNodeFrom(
  record: NodeRecord,
  standing: NodeStanding | undefined,
  load?: NodeLoad,
  options: SchedulerNodeFromOptions = {},
): SchedulerNode {
  const fromLoad = load !== undefined && load.devices.length > 0;
  const devices: SchedulerDevice[] = fromLoad
    ? load.devices.map((device) => ({
        deviceType: device.deviceType,
        memoryBytes: device.availableMemoryBytes,
      }))
    : record.devices.map((device) => ({
        deviceType: device.deviceType,
        memoryBytes:
          device.availableMemoryBytes > 0n ? device.availableMemoryBytes : device.totalMemoryBytes,
      }));
  let maxConcurrentJobs = record.maxConcurrentJobs > 0 ? record.maxConcurrentJobs : 1;
  if (load !== undefined) {
    maxConcurrentJobs = Math.min(maxConcurrentJobs, load.activeJobIds.length + load.freeSlots);
  }
  const nowMs = (options.now ?? new Date()).getTime();
  const bannedUntil = standing?.bannedUntil;
  const endpoint = record.endpoint;
  return {
    address: record.address,
    devices,
    ramAvailableBytes: load !== undefined ? load.ramAvailableBytes : record.ramTotalBytes,
    runtimes: [...record.runtimes],
    pricePerHour: parseBaseUnits(record.pricePerHour, "price_per_hour"),
    reputation: clampUnit(standing?.reputation ?? NEW_NODE_REPUTATION),
    uptimeRatio: clampUnit(standing?.uptimeRatio ?? 0),
    maxConcurrentJobs,
    banned: bannedUntil !== undefined && timestampMs(bannedUntil) > nowMs,
    online: standing?.online ?? true,
    reachable: endpoint !== undefined && (endpoint.url !== "" || endpoint.host !== ""),
    runningJobIds: load !== undefined ? [...load.activeJobIds] : [],
  };
}

function clampUnit(value: number): number {
  if (!Number.isFinite(value)) return 0;
  return Math.min(1, Math.max(0, value));
}
