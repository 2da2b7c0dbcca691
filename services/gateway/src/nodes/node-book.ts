/**
 * The compute nodes registered with this gateway: their signed records, the models accepted from
 * each, their heartbeats and load, their task stream, and the request ids each must be told to
 * stop. A node is online while its heartbeats arrive within the timeout; it is gone (and its
 * tasks re-routed) when heartbeats stop, or its stream stays closed, for the timeout.
 */
import type {
  ModelDescriptor,
  NodeLoad,
  NodeRecord,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { TaskStream } from "./task-stream.js";

/** One registered node. */
export interface GatewayNode {
  readonly address: string;
  record: NodeRecord;
  /** The node's models this gateway routes to it, by model id. */
  accepted: Map<string, ModelDescriptor>;
  readonly registeredAtMs: number;
  lastHeartbeatMs: number;
  load: NodeLoad | undefined;
  stream: TaskStream | undefined;
  /** Since when the node has had no open stream (registration counts as the start). */
  streamlessSinceMs: number | undefined;
  /** Whether the node was declared gone; a heartbeat or a new stream brings it back. */
  gone: boolean;
  /** Request ids the node must stop (cancelled or re-routed), told on each heartbeat. */
  readonly cancelled: Set<string>;
}

/** Options of {@link createNodeBook}. */
export interface NodeBookOptions {
  /** Silence after which a node is gone, in milliseconds. */
  readonly timeoutMs: number;
}

/** See the module comment. */
export interface NodeBook {
  get(address: string): GatewayNode | undefined;
  /** Adds or updates a node's record and accepted models; registration counts as a heartbeat. */
  register(record: NodeRecord, accepted: Map<string, ModelDescriptor>, nowMs: number): GatewayNode;
  /** Records a heartbeat. */
  heartbeat(node: GatewayNode, load: NodeLoad | undefined, nowMs: number): void;
  /** Installs `stream` as the node's only stream; the previous one is closed with `replaced`. */
  attachStream(node: GatewayNode, stream: TaskStream, replaced: Error): void;
  /** Forgets `stream` if it is still the node's stream. */
  detachStream(node: GatewayNode, stream: TaskStream, nowMs: number): void;
  /** Whether heartbeats arrive within the timeout and the node was not declared gone. */
  isOnline(node: GatewayNode, nowMs: number): boolean;
  /** Nodes that just went away (no heartbeat, or no stream, for the timeout); marks them gone. */
  takeGone(nowMs: number): GatewayNode[];
  /** Every registered node, by address. */
  all(): GatewayNode[];
  /** Closes every stream (shutdown). */
  closeAll(): void;
}

/** An empty {@link NodeBook}. */
export function createNodeBook(options: NodeBookOptions): NodeBook {
  const nodes = new Map<string, GatewayNode>();
  const silentFor = (node: GatewayNode, nowMs: number) => nowMs - node.lastHeartbeatMs;
  return {
    get: (address) => nodes.get(address),
    register(record, accepted, nowMs) {
      const existing = nodes.get(record.address);
      if (existing !== undefined) {
        existing.record = record;
        existing.accepted = accepted;
        existing.lastHeartbeatMs = nowMs;
        existing.gone = false;
        if (existing.stream === undefined) existing.streamlessSinceMs = nowMs;
        return existing;
      }
      const node: GatewayNode = {
        address: record.address,
        record,
        accepted,
        registeredAtMs: nowMs,
        lastHeartbeatMs: nowMs,
        load: undefined,
        stream: undefined,
        streamlessSinceMs: nowMs,
        gone: false,
        cancelled: new Set(),
      };
      nodes.set(node.address, node);
      return node;
    },
    heartbeat(node, load, nowMs) {
      node.lastHeartbeatMs = nowMs;
      node.load = load;
      // A node that beats but keeps no stream stays gone: it cannot be sent tasks.
      if (node.stream !== undefined) node.gone = false;
    },
    attachStream(node, stream, replaced) {
      const previous = node.stream;
      node.stream = stream;
      node.streamlessSinceMs = undefined;
      node.gone = false;
      previous?.close(replaced);
    },
    detachStream(node, stream, nowMs) {
      stream.close();
      if (node.stream !== stream) return;
      node.stream = undefined;
      node.streamlessSinceMs = nowMs;
    },
    isOnline: (node, nowMs) => !node.gone && silentFor(node, nowMs) < options.timeoutMs,
    takeGone(nowMs) {
      const gone: GatewayNode[] = [];
      for (const node of nodes.values()) {
        if (node.gone) continue;
        const streamless =
          node.streamlessSinceMs !== undefined &&
          nowMs - node.streamlessSinceMs >= options.timeoutMs;
        if (silentFor(node, nowMs) >= options.timeoutMs || streamless) {
          node.gone = true;
          gone.push(node);
        }
      }
      return gone;
    },
    all: () => [...nodes.values()].sort((a, b) => (a.address < b.address ? -1 : 1)),
    closeAll() {
      for (const node of nodes.values()) node.stream?.close();
    },
  };
}
