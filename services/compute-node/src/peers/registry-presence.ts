/**
 * The node's entry in the registry's directory (optional): registers its signed record and
 * heartbeats its load at the interval the registry asks for, so validators can route paid jobs
 * to it. Registers again when the registry forgets it.
 */
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { NodeLoad, NodeRecord } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import type { Logger } from "@tessera/runtime";
import { Backoff, sleep } from "../agent/backoff.js";
import { NODE_PROTOCOL_VERSION } from "../protocol-version.js";

/** Options of {@link startRegistryPresence}. */
export interface RegistryPresenceOptions {
  readonly registry: Client<typeof RegistryService>;
  readonly record: NodeRecord;
  /** The node's load now. */
  readonly load: () => NodeLoad;
  readonly logger: Logger;
}

/** A running presence; `close()` stops it (safe to call twice). */
export interface RegistryPresence {
  close(): Promise<void>;
}

/** Starts registering and heartbeating in the background; never throws. */
export function startRegistryPresence(options: RegistryPresenceOptions): RegistryPresence {
  const log = options.logger.child({ component: "registry-presence" });
  const stop = new AbortController();
  const { signal } = stop;
  const address = options.record.address;

  async function loop(): Promise<void> {
    const backoff = new Backoff({ initialMs: 1000, maxMs: 60_000 });
    let intervalMs = 10_000;
    let registered = false;
    while (!signal.aborted) {
      try {
        if (!registered) {
          const answer = await options.registry.registerNode(
            { protocolVersion: NODE_PROTOCOL_VERSION, record: options.record },
            { timeoutMs: 15_000, signal },
          );
          registered = true;
          if (answer.heartbeatIntervalMs > 0) intervalMs = answer.heartbeatIntervalMs;
          log.info({ address, heartbeatMs: intervalMs }, "registered with the registry");
        } else {
          const answer = await options.registry.updateNodeHeartbeat(
            { protocolVersion: NODE_PROTOCOL_VERSION, nodeAddress: address, load: options.load() },
            { timeoutMs: 10_000, signal },
          );
          if (answer.heartbeatIntervalMs > 0) intervalMs = answer.heartbeatIntervalMs;
        }
        backoff.reset();
        await sleep(intervalMs, signal);
      } catch (error) {
        if (signal.aborted) return;
        if (ConnectError.from(error).code === Code.NotFound) registered = false;
        const delay = backoff.next();
        log.warn(
          { err: error, retryInMs: delay },
          registered ? "registry heartbeat failed" : "cannot register with the registry",
        );
        await sleep(delay, signal);
      }
    }
  }

  const running = loop();
  return {
    close() {
      stop.abort();
      return running;
    },
  };
}
