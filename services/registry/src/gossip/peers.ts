/**
 * Registry peers: a base URL and, once known, the peer's address (signed gossip calls name their
 * target by address). Configured peers are written `<address>@<url>`; peers learned from gossip
 * arrive as URLs and get their address from the peer's own signed NODE_TYPE_REGISTRY record.
 */
import { isAddress } from "@tessera/identity/address";

/** One registry peer. */
export interface RegistryPeer {
  /** Normalized base URL, e.g. "http://registry-2:7003". */
  readonly url: string;
  /** The peer's address, when known. */
  readonly address: string | undefined;
}

/**
 * A base URL in canonical form (http or https, no trailing slash, no query or fragment), or
 * undefined when `text` is not one.
 */
export function normalizePeerUrl(text: string): string | undefined {
  if (text.length === 0 || text.length > 512) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
    return undefined;
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/**
 * Parses a comma-separated list of peers, each `<address>@<url>` or a bare `<url>` (whose address
 * is learned from gossip later). Empty entries are skipped.
 * @throws RangeError naming the first malformed entry.
 */
export function parseRegistryPeers(text: string): RegistryPeer[] {
  const peers: RegistryPeer[] = [];
  for (const raw of text.split(",")) {
    const entry = raw.trim();
    if (entry === "") continue;
    const at = entry.indexOf("@");
    const address = at > 0 && !entry.slice(0, at).includes("/") ? entry.slice(0, at) : undefined;
    const url = normalizePeerUrl(address === undefined ? entry : entry.slice(at + 1));
    if (url === undefined) {
      throw new RangeError(`registry peer "${entry}": expected [<address>@]http(s)://host:port`);
    }
    if (address !== undefined && !isAddress(address)) {
      throw new RangeError(`registry peer "${entry}": "${address}" is not a valid address`);
    }
    peers.push({ url, address });
  }
  return peers;
}
