/**
 * The periodic side of gossip: every `intervalMs`, call Gossip on each known peer (in parallel,
 * each bounded by `timeoutMs`) with this registry's view, and take in the answers. A peer that
 * fails is retried next round; a peer whose address is not known yet is skipped until its signed
 * registry record arrives (signed calls must name their target).
 */
import type {
  GossipRequest,
  GossipResponse,
} from "@tessera/proto/tessera/registry/v1/metagraph_service_pb.js";
import type { AbsorbReport, Metagraph } from "./metagraph.js";
import type { RegistryPeer } from "./peers.js";

/** A peer with a known address. */
export interface AddressedPeer extends RegistryPeer {
  readonly address: string;
}

/** Sends one Gossip call (the transport adapter); rejects on any failure. */
export type GossipCall = (
  peer: AddressedPeer,
  request: GossipRequest,
  signal: AbortSignal,
) => Promise<GossipResponse>;

/** What one round did. */
export interface GossipRoundReport {
  /** Peers called. */
  readonly called: number;
  /** Peers that answered, and what their answers brought. */
  readonly answered: number;
  readonly accepted: number;
  readonly rejected: number;
  /** Peers skipped because their address is unknown yet. */
  readonly unaddressed: readonly string[];
  /** Peers that failed, with the reason. */
  readonly failed: readonly { readonly url: string; readonly reason: string }[];
}

/** Options of {@link createGossipLoop}. */
export interface GossipLoopOptions {
  readonly metagraph: Metagraph;
  readonly call: GossipCall;
  /** Time between the end of a round and the start of the next, in milliseconds; default 30000. */
  readonly intervalMs?: number | undefined;
  /** How long one peer gets to answer, in milliseconds; default 10000. */
  readonly timeoutMs?: number | undefined;
  /** Told after each round (log it). */
  readonly onRound?: ((report: GossipRoundReport) => void) | undefined;
  /** Told when a round fails as a whole (e.g. the store is down); the loop goes on. */
  readonly onError?: ((error: unknown) => void) | undefined;
}

/** Where the loop is in its life. */
export type GossipLoopState = "idle" | "running" | "closed";

/** A periodic gossip loop. */
export interface GossipLoop {
  readonly state: GossipLoopState;
  /** Starts the rounds (the first one at once). Idempotent; ignored after close(). */
  start(): void;
  /** Runs one round now (also usable without start(), e.g. in tests). */
  runOnce(signal?: AbortSignal): Promise<GossipRoundReport>;
  /** Stops the rounds, aborts the running one and waits for it. Safe to call twice. */
  close(): Promise<void>;
}

/** A {@link GossipLoop}; nothing runs until start() or runOnce(). */
export function createGossipLoop(options: GossipLoopOptions): GossipLoop {
  const { metagraph, call } = options;
  const intervalMs = options.intervalMs ?? 30_000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const stop = new AbortController();
  let state: GossipLoopState = "idle";
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<unknown> = Promise.resolve();
  let closing: Promise<void> | undefined;

  const runOnce = async (signal: AbortSignal = stop.signal): Promise<GossipRoundReport> => {
    const peers = await metagraph.peers();
    const addressed = peers.filter((p): p is AddressedPeer => p.address !== undefined);
    const unaddressed = peers.filter((p) => p.address === undefined).map((p) => p.url);
    const results = await Promise.all(
      addressed.map(async (peer) => {
        const peerSignal = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);
        try {
          const response = await call(peer, await metagraph.outgoing(peer), peerSignal);
          return { peer, report: await metagraph.absorb(response, peer) };
        } catch (error) {
          return { peer, error };
        }
      }),
    );
    const answered = results.filter(
      (r): r is { peer: AddressedPeer; report: AbsorbReport } => "report" in r,
    );
    return {
      called: addressed.length,
      answered: answered.length,
      accepted: answered.reduce((sum, r) => sum + r.report.accepted, 0),
      rejected: answered.reduce((sum, r) => sum + r.report.rejected, 0),
      unaddressed,
      failed: results
        .filter((r) => "error" in r)
        .map((r) => ({ url: r.peer.url, reason: messageOf((r as { error: unknown }).error) })),
    };
  };

  const schedule = (delayMs: number) => {
    timer = setTimeout(() => {
      current = runOnce().then(
        (report) => options.onRound?.(report),
        (error: unknown) => {
          if (!stop.signal.aborted) options.onError?.(error);
        },
      );
      void current.finally(() => {
        if (state === "running") schedule(intervalMs);
      });
    }, delayMs);
    timer.unref();
  };

  return {
    get state() {
      return state;
    },
    start() {
      if (state !== "idle") return;
      state = "running";
      schedule(0);
    },
    runOnce,
    close() {
      closing ??= (async () => {
        state = "closed";
        clearTimeout(timer);
        stop.abort();
        await current.catch(() => {});
      })();
      return closing;
    },
  };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
