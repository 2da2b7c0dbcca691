/**
 * Whether a directory entry qualifies as the route of a piece of work, checked the same way by
 * the registry (when it picks or checks a node) and by each validator (before it signs).
 */
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { findNodeRecordProblem } from "@tessera/identity/node-record";
import {
  type Endpoint,
  NodeType,
  type Route,
  RouteSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { NodeEntry } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { WorkKind } from "@tessera/proto/tessera/registry/v1/validation_pb.js";

/** Where a node's route points: the endpoint's URL, or http://host:port, or "" behind NAT. */
export function endpointUrl(endpoint: Endpoint | undefined): string {
  if (endpoint === undefined) return "";
  if (endpoint.url !== "") return endpoint.url;
  if (endpoint.host === "") return "";
  const host = endpoint.host.includes(":") ? `[${endpoint.host}]` : endpoint.host;
  return `http://${host}:${endpoint.port}`;
}

/** What a route must satisfy. */
export interface RouteRequirements {
  /**
   * The kind of work. An inference task runs on a model the node hosts warm; a batch job brings
   * its model by content (the node fetches it from the job server), so its node need not host it.
   */
  readonly kind: WorkKind;
  readonly modelId: string;
  readonly subnetId: bigint;
  readonly now: Date;
  readonly minPowDifficulty: number;
}

/**
 * Why `entry` cannot run the work, in words fit for an error message, or undefined when it
 * qualifies: a valid signed record with proof of work, a compute node, online, not banned,
 * hosting the model warm (inference tasks; not batch jobs), in the work's subnet.
 */
export function routeProblem(
  entry: NodeEntry | undefined,
  requirements: RouteRequirements,
): string | undefined {
  const record = entry?.record;
  if (entry === undefined || record === undefined) return "the node is not registered";
  const who = `node ${record.address}`;
  const recordProblem = findNodeRecordProblem(record, {
    minPowDifficulty: requirements.minPowDifficulty,
  });
  if (recordProblem !== undefined) return `${who} has an invalid record: ${recordProblem}`;
  if (record.nodeType !== NodeType.COMPUTE) return `${who} is not a compute node`;
  const standing = entry.standing;
  if (
    standing?.bannedUntil !== undefined &&
    timestampMs(standing.bannedUntil) > requirements.now.getTime()
  ) {
    return `${who} is banned`;
  }
  if (standing?.online !== true) return `${who} is offline`;
  if (
    requirements.kind !== WorkKind.BATCH_JOB &&
    !record.models.some((model) => model.modelId === requirements.modelId)
  ) {
    return `${who} does not host model "${requirements.modelId}"`;
  }
  if (record.subnetId !== requirements.subnetId) {
    return `${who} is in subnet ${record.subnetId}, not ${requirements.subnetId}`;
  }
  return undefined;
}

/** The route of work run by `entry`'s node for `gatewayAddress`. */
export function routeTo(entry: NodeEntry, gatewayAddress: string): Route {
  const record = entry.record;
  return create(RouteSchema, {
    computeNodeId: record?.address ?? "",
    computeNodeAddress: record?.address ?? "",
    computeNodeEndpoint: endpointUrl(record?.endpoint),
    gatewayAddress,
  });
}

/** The first field in which two routes differ ("compute_node_address", ...), or undefined. */
export function routeDifference(
  expected: Route | undefined,
  actual: Route | undefined,
): string | undefined {
  if (expected === undefined || actual === undefined) {
    return expected === actual ? undefined : "route";
  }
  const fields = [
    ["compute_node_id", expected.computeNodeId, actual.computeNodeId],
    ["compute_node_address", expected.computeNodeAddress, actual.computeNodeAddress],
    ["compute_node_endpoint", expected.computeNodeEndpoint, actual.computeNodeEndpoint],
    ["gateway_address", expected.gatewayAddress, actual.gatewayAddress],
  ] as const;
  for (const [name, want, got] of fields) if (want !== got) return `route.${name}`;
  return undefined;
}
