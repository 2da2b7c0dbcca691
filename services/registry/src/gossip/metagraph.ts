/**
 * The metagraph: what a registry tells its peers and how it takes in what they tell it
 * (MetagraphService.Gossip, Bittensor's GossipBatch). The acceptance rule of the contract:
 *
 * 1. Each received record goes through the directory's `acceptRecord`: valid signature, address
 *    derived from the key, proof of work at the receiver's minimum, the newest sequence wins
 *    (tombstones included). Invalid records are dropped one by one, and the sending peer is counted
 *    as misbehaving; the exchange itself still succeeds.
 * 2. Records issued longer ago than `recordLifetimeMs` are ignored.
 * 3. Standing (reputation, strikes) is never gossiped: only signed records travel.
 *
 * Each side sends at most `batchSize` records, most recently issued first; when there are more,
 * each further exchange with the same peer sends the next batch, round robin, so the rest follow
 * in later rounds.
 */
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type NodeRecord, NodeType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type GossipRequest,
  GossipRequestSchema,
  type GossipResponse,
  GossipResponseSchema,
} from "@tessera/proto/tessera/registry/v1/metagraph_service_pb.js";
import type { Directory } from "../directory/directory.js";
import { DirectoryError } from "../directory/errors.js";
import { PROTOCOL_VERSION, protocolVersionProblem } from "../validation/protocol-version.js";
import { endpointUrl } from "../validation/route.js";
import { GossipError } from "./errors.js";
import { normalizePeerUrl, type RegistryPeer } from "./peers.js";

/** Most peer URLs one message may carry (the contract's limit). */
export const MAX_GOSSIP_PEERS = 256;

/** Options of {@link createMetagraph}. */
export interface MetagraphOptions {
  readonly directory: Pick<Directory, "acceptRecord" | "allRecords" | "getEntry" | "findNodes">;
  /** This registry's address. */
  readonly selfAddress: string;
  /** The URL peers reach this registry at (PUBLIC_URL); sent in every message. */
  readonly selfUrl: string;
  /** Configured peers (REGISTRY_PEERS); their addresses may call Gossip before any record of theirs is known. */
  readonly bootstrapPeers?: readonly RegistryPeer[] | undefined;
  /** Records per message, 1-10000; default 1000. A peer sending more is refused. */
  readonly batchSize?: number | undefined;
  /** Peers remembered at most; default 256. */
  readonly maxPeers?: number | undefined;
  /** Records issued longer ago are ignored, in milliseconds; 0 for no limit; default 7 days. */
  readonly recordLifetimeMs?: number | undefined;
  /** Wall clock; default `() => new Date()`. */
  readonly clock?: (() => Date) | undefined;
}

/** What taking in one message did. */
export interface AbsorbReport {
  /** Records stored because they were new or newer. */
  readonly accepted: number;
  /** Valid records that were not newer (or too old, or of a banned node). */
  readonly ignored: number;
  /** Invalid records dropped (bad signature, proof of work, version, ...). */
  readonly rejected: number;
}

/** A registry's side of gossip. */
export interface Metagraph {
  /**
   * Answers a Gossip call from `caller` (the verified signer): checks version, limits and that
   * the caller is a registry, takes in its records and peers, and returns this registry's view.
   * @throws GossipError (failed_precondition, resource_exhausted, permission_denied).
   */
  exchange(request: GossipRequest, caller: string): Promise<GossipResponse>;
  /** The message this registry sends to `peer` in a gossip round. */
  outgoing(peer: RegistryPeer): Promise<GossipRequest>;
  /** Takes in `peer`'s answer to a gossip call. */
  absorb(response: GossipResponse, peer: RegistryPeer): Promise<AbsorbReport>;
  /**
   * The peers to gossip with: every known URL but this registry's own, with its address from
   * the configuration or from the peer's registry record (undefined while unknown).
   */
  peers(): Promise<RegistryPeer[]>;
  /** Invalid records received per peer address since start. */
  misbehaviour(): ReadonlyMap<string, number>;
}

const DAY_MS = 86_400_000;

/** A {@link Metagraph} over `options.directory`. Holds no resources. */
export function createMetagraph(options: MetagraphOptions): Metagraph {
  const { directory, selfAddress } = options;
  const selfUrl = normalizePeerUrl(options.selfUrl);
  if (selfUrl === undefined) throw new RangeError("selfUrl must be an http(s) base URL");
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
    throw new RangeError("batchSize must be an integer in 1..10000");
  }
  const maxPeers = options.maxPeers ?? MAX_GOSSIP_PEERS;
  const lifetimeMs = options.recordLifetimeMs ?? 7 * DAY_MS;
  const clock = options.clock ?? (() => new Date());

  const configured = new Map<string, string | undefined>();
  for (const peer of options.bootstrapPeers ?? []) {
    if (peer.url !== selfUrl) configured.set(peer.url, peer.address);
  }
  const bootstrapAddresses = new Set(
    [...configured.values()].filter((a): a is string => a !== undefined),
  );
  const learned = new Set<string>();
  const misbehaving = new Map<string, number>();
  const cursors = new Map<string, number>();

  const learn = (urls: readonly string[]) => {
    for (const text of urls) {
      const url = normalizePeerUrl(text);
      if (url === undefined || url === selfUrl || configured.has(url) || learned.has(url)) continue;
      if (configured.size + learned.size >= maxPeers) return;
      learned.add(url);
    }
  };

  const knownUrls = () => [selfUrl, ...configured.keys(), ...learned].slice(0, MAX_GOSSIP_PEERS);

  /** Newest first, then the batch after the one sent to the same peer last time. */
  const batchFor = async (peerKey: string): Promise<NodeRecord[]> => {
    const records = (await directory.allRecords()).sort(byIssuedDescending);
    if (records.length <= batchSize) return records;
    const start = (cursors.get(peerKey) ?? 0) % records.length;
    cursors.set(peerKey, start + batchSize >= records.length ? 0 : start + batchSize);
    return records.slice(start, start + batchSize);
  };

  const absorbRecords = async (
    records: readonly NodeRecord[],
    from: string | undefined,
  ): Promise<AbsorbReport> => {
    let accepted = 0;
    let ignored = 0;
    let rejected = 0;
    const oldestMs = lifetimeMs > 0 ? clock().getTime() - lifetimeMs : Number.NEGATIVE_INFINITY;
    for (const record of records) {
      if (record.issuedAt !== undefined && timestampMs(record.issuedAt) < oldestMs) {
        ignored++;
        continue;
      }
      try {
        if ((await directory.acceptRecord(record)) === "accepted") accepted++;
        else ignored++;
      } catch (error) {
        if (!(error instanceof DirectoryError)) throw error;
        if (error.kind === "banned") {
          ignored++;
        } else {
          rejected++;
          if (from !== undefined) misbehaving.set(from, (misbehaving.get(from) ?? 0) + 1);
        }
      }
    }
    return { accepted, ignored, rejected };
  };

  const checkLimits = (message: GossipRequest | GossipResponse, who: string) => {
    const version = protocolVersionProblem(message.protocolVersion);
    if (version !== undefined) throw new GossipError("failed_precondition", `${who}: ${version}`);
    if (message.peers.length > MAX_GOSSIP_PEERS) {
      throw new GossipError(
        "resource_exhausted",
        `${who} lists ${message.peers.length} peers, at most ${MAX_GOSSIP_PEERS} allowed`,
      );
    }
    if (message.nodeRecords.length > batchSize) {
      throw new GossipError(
        "resource_exhausted",
        `${who} carries ${message.nodeRecords.length} records, at most ${batchSize} allowed`,
      );
    }
  };

  /** Whether `caller` may gossip: a configured peer, a known registry, or one introducing itself. */
  const admitCaller = async (caller: string, request: GossipRequest): Promise<boolean> => {
    if (bootstrapAddresses.has(caller)) return true;
    const entry = await directory.getEntry(caller);
    if (entry?.record?.nodeType === NodeType.REGISTRY) return true;
    const introduction = request.nodeRecords.find(
      (record) => record.address === caller && record.nodeType === NodeType.REGISTRY,
    );
    if (introduction === undefined) return false;
    // A registry that is new to us proves itself with its own signed record and proof of work.
    const report = await absorbRecords([introduction], caller);
    if (report.rejected > 0) return false;
    return (await directory.getEntry(caller))?.record?.nodeType === NodeType.REGISTRY;
  };

  return {
    async exchange(request, caller) {
      checkLimits(request, "the request");
      if (!(await admitCaller(caller, request))) {
        throw new GossipError(
          "permission_denied",
          `${caller} is not a registry known here nor a configured peer`,
        );
      }
      await absorbRecords(request.nodeRecords, caller);
      learn(request.peers);
      return create(GossipResponseSchema, {
        protocolVersion: PROTOCOL_VERSION,
        peers: knownUrls(),
        nodeRecords: await batchFor(caller),
      });
    },

    async outgoing(peer) {
      return create(GossipRequestSchema, {
        protocolVersion: PROTOCOL_VERSION,
        peers: knownUrls(),
        nodeRecords: await batchFor(peer.address ?? peer.url),
      });
    },

    async absorb(response, peer) {
      checkLimits(response, `peer ${peer.url}`);
      const report = await absorbRecords(response.nodeRecords, peer.address);
      learn(response.peers);
      return report;
    },

    async peers() {
      const byUrl = new Map<string, string>();
      if (learned.size > 0 || [...configured.values()].includes(undefined)) {
        const registries = await directory.findNodes({ nodeType: NodeType.REGISTRY });
        for (const entry of registries) {
          const url = normalizePeerUrl(endpointUrl(entry.record?.endpoint));
          if (url !== undefined && entry.record !== undefined) byUrl.set(url, entry.record.address);
        }
      }
      const peers: RegistryPeer[] = [];
      for (const [url, address] of configured) {
        peers.push({ url, address: address ?? byUrl.get(url) });
      }
      for (const url of learned) peers.push({ url, address: byUrl.get(url) });
      // This registry under another name (e.g. a compose hostname for its own URL).
      return peers.filter((peer) => peer.address !== selfAddress);
    },

    misbehaviour() {
      return misbehaving;
    },
  };
}

function byIssuedDescending(a: NodeRecord, b: NodeRecord): number {
  const at = a.issuedAt === undefined ? 0 : timestampMs(a.issuedAt);
  const bt = b.issuedAt === undefined ? 0 : timestampMs(b.issuedAt);
  return bt - at || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0);
}
