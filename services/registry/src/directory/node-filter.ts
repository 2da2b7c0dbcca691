/**
 * Discovery filters and the "best first" order of DiscoverNodes, as pure functions over directory
 * entries.
 */
import type {
  DeviceType,
  NodeRecord,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { NodeEntry } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";

/** Most entries one discovery returns when the caller does not say. */
export const DEFAULT_MAX_RESULTS = 1000;
/** Most entries one discovery returns at all. */
export const MAX_RESULTS = 10_000;

/**
 * What DiscoverNodes filters on; an entry must match every filter that is set. Unset (undefined,
 * 0, empty or UNSPECIFIED) means "any".
 */
export interface NodeFilter {
  readonly nodeType?: NodeType | undefined;
  /** A device of this kind... */
  readonly deviceType?: DeviceType | undefined;
  /** ...with at least this much total memory (the same device must satisfy both). */
  readonly minDeviceMemoryBytes?: bigint | undefined;
  readonly runtime?: string | undefined;
  /** Hosts this model warm. */
  readonly modelId?: string | undefined;
  /** In this subnet; undefined for any subnet (0 is the default subnet). */
  readonly subnetId?: bigint | undefined;
  /** Heartbeats arrive within the timeout and the node is not banned. */
  readonly onlineOnly?: boolean | undefined;
  /** Reputation in [0, 1]. */
  readonly minReputation?: number | undefined;
  readonly capability?: string | undefined;
  /** 1-10000; 0 or undefined means 1000; larger values are lowered to 10000. */
  readonly maxResults?: number | undefined;
}

/** How many entries a discovery with `filter` returns at most. */
export function maxResultsOf(filter: NodeFilter): number {
  const requested = filter.maxResults ?? 0;
  if (requested <= 0) return DEFAULT_MAX_RESULTS;
  return Math.min(requested, MAX_RESULTS);
}

/** Whether `record` satisfies the record-side filters (type, device, runtime, model, capability). */
export function recordMatches(record: NodeRecord, filter: NodeFilter): boolean {
  if (filter.nodeType && record.nodeType !== filter.nodeType) return false;
  if (filter.subnetId !== undefined && record.subnetId !== filter.subnetId) return false;
  if (filter.deviceType || filter.minDeviceMemoryBytes) {
    const minMemory = filter.minDeviceMemoryBytes ?? 0n;
    const hasDevice = record.devices.some(
      (device) =>
        (!filter.deviceType || device.deviceType === filter.deviceType) &&
        device.totalMemoryBytes >= minMemory,
    );
    if (!hasDevice) return false;
  }
  if (filter.runtime && !record.runtimes.includes(filter.runtime)) return false;
  if (filter.capability && !record.capabilities.includes(filter.capability)) return false;
  if (filter.modelId && !record.models.some((model) => model.modelId === filter.modelId)) {
    return false;
  }
  return true;
}

/** Whether `entry` satisfies every filter, the observed standing included. */
export function entryMatches(entry: NodeEntry, filter: NodeFilter): boolean {
  const { record, standing } = entry;
  if (record === undefined || standing === undefined) return false;
  if (filter.onlineOnly && !standing.online) return false;
  if (filter.minReputation && standing.reputation < filter.minReputation) return false;
  return recordMatches(record, filter);
}

/** DiscoverNodes order: online first, then higher reputation, then more free slots, then address. */
export function compareEntries(a: NodeEntry, b: NodeEntry): number {
  const online = Number(b.standing?.online ?? false) - Number(a.standing?.online ?? false);
  if (online !== 0) return online;
  const reputation = (b.standing?.reputation ?? 0) - (a.standing?.reputation ?? 0);
  if (reputation !== 0) return reputation;
  const slots = (b.load?.freeSlots ?? 0) - (a.load?.freeSlots ?? 0);
  if (slots !== 0) return slots;
  const left = a.record?.address ?? "";
  const right = b.record?.address ?? "";
  return left < right ? -1 : left > right ? 1 : 0;
}
