/**
 * Where this job server reaches the nodes connected to it: one delivery channel per node, opened
 * by its ReceiveAssignments stream (or, for a node that pulls with AssignJob, for the length of
 * that call). A new channel for a node closes the previous one (one open stream per node).
 * Events pushed while a node has no channel are dropped: assignments stay pending in the
 * database and are re-sent when the node reconnects, and cancellations reach it through its
 * heartbeat.
 */
import type { ReceiveAssignmentsResponse } from "@tessera/proto/tessera/job/v1/node_service_pb.js";

/** One event for a node. */
export type NodeEventOut = ReceiveAssignmentsResponse["event"];

/** A node's delivery channel. */
export interface NodeChannel {
  readonly address: string;
  readonly kind: "stream" | "poll";
  /** Whether the channel was closed (by a newer one, by shutdown, or by its owner). */
  readonly closed: boolean;
  /**
   * The events pushed since the last call, waiting up to `timeoutMs` (or until the channel
   * closes or `signal` aborts) for the first one; empty on timeout.
   */
  next(timeoutMs: number, signal?: AbortSignal): Promise<NodeEventOut[]>;
  /** Closes the channel; later pushes go nowhere. Safe twice. */
  close(): void;
}

/** The hub; see the module comment. */
export interface AssignmentHub {
  /** Opens `address`'s channel, closing its previous one. */
  open(address: string, kind: "stream" | "poll"): NodeChannel;
  /** Delivers `event` to `address`'s channel; false when the node has none. */
  push(address: string, event: NodeEventOut): boolean;
  /** Whether `address` has an open channel. */
  isConnected(address: string): boolean;
  /** Nodes with an open channel. */
  connected(): string[];
  /** Tells `listener` when a node's channel opens or closes; returns a remover. */
  onChange(listener: (address: string, connected: boolean) => void): () => void;
  /** Closes every channel (shutdown). */
  closeAll(): void;
}

class Channel implements NodeChannel {
  readonly address: string;
  readonly kind: "stream" | "poll";
  #closed = false;
  #events: NodeEventOut[] = [];
  #wake: (() => void) | undefined;
  readonly #onClose: (channel: Channel) => void;

  constructor(address: string, kind: "stream" | "poll", onClose: (channel: Channel) => void) {
    this.address = address;
    this.kind = kind;
    this.#onClose = onClose;
  }

  get closed(): boolean {
    return this.#closed;
  }

  push(event: NodeEventOut): boolean {
    if (this.#closed) return false;
    this.#events.push(event);
    this.#wake?.();
    return true;
  }

  async next(timeoutMs: number, signal?: AbortSignal): Promise<NodeEventOut[]> {
    if (this.#events.length === 0 && !this.#closed && signal?.aborted !== true) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          this.#wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, Math.max(0, timeoutMs));
        signal?.addEventListener("abort", done, { once: true });
        this.#wake = done;
      });
    }
    return this.#events.splice(0);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    this.#onClose(this);
  }
}

/** An empty hub. */
export function createAssignmentHub(): AssignmentHub {
  const channels = new Map<string, Channel>();
  const listeners = new Set<(address: string, connected: boolean) => void>();
  const tell = (address: string, connected: boolean) => {
    for (const listener of listeners) listener(address, connected);
  };
  const forget = (channel: Channel) => {
    if (channels.get(channel.address) === channel) {
      channels.delete(channel.address);
      tell(channel.address, false);
    }
  };
  return {
    open(address, kind) {
      const previous = channels.get(address);
      const channel = new Channel(address, kind, forget);
      channels.set(address, channel);
      // Replaced, not forgotten: the node stays connected through the new channel.
      previous?.close();
      tell(address, true);
      return channel;
    },
    push(address, event) {
      return channels.get(address)?.push(event) ?? false;
    },
    isConnected(address) {
      return channels.has(address);
    },
    connected() {
      return [...channels.keys()];
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    closeAll() {
      for (const channel of [...channels.values()]) channel.close();
    },
  };
}
