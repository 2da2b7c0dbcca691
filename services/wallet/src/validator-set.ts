/**
 * The validator set as the registry publishes it: ACTIVE validators from its open ListValidators
 * RPC (all pages), with `required_signatures` as the quorum. The ledger checks completion
 * validations against it before it releases an escrow.
 */
import { type Client, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  RegistryService,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { WALLET_PROTOCOL_VERSION } from "./ledger/records.js";
import type { ValidatorSetSnapshot, ValidatorSetSource } from "./ledger/validator-set-source.js";

/** Options of {@link createRegistryValidatorSet}. */
export interface RegistryValidatorSetOptions {
  /** The registry's base URL, e.g. "http://registry:7003" (HTTP/2 cleartext). */
  readonly registryUrl: string;
  /** A transport to use instead of one to `registryUrl` (tests). */
  readonly transport?: Transport | undefined;
  /** How long a fetched set is reused. Defaults to 5,000 ms. */
  readonly cacheMs?: number | undefined;
  /** Deadline of each ListValidators call. Defaults to 5,000 ms. */
  readonly timeoutMs?: number | undefined;
  /** Clock for the cache, in Unix ms. Defaults to `Date.now`. */
  readonly nowMs?: (() => number) | undefined;
}

/** A {@link ValidatorSetSource} with a connection to close. */
export interface RegistryValidatorSet extends ValidatorSetSource {
  /** Closes the connection to the registry. Safe to call twice. */
  close(): void;
}

/**
 * Reads the registry's validator set, caching it for `cacheMs`; concurrent readers share one
 * fetch. Rejects (the ledger then answers `unavailable` and releases nothing) when the registry
 * cannot be reached, answers an error, or reports no quorum.
 */
export function createRegistryValidatorSet(
  options: RegistryValidatorSetOptions,
): RegistryValidatorSet {
  const session =
    options.transport === undefined ? new Http2SessionManager(options.registryUrl) : undefined;
  const transport =
    options.transport ??
    createConnectTransport({
      baseUrl: options.registryUrl,
      httpVersion: "2",
      ...(session === undefined ? {} : { sessionManager: session }),
    });
  const client: Client<typeof RegistryService> = createClient(RegistryService, transport);
  const cacheMs = options.cacheMs ?? 5000;
  const timeoutMs = options.timeoutMs ?? 5000;
  const nowMs = options.nowMs ?? Date.now;
  let cached: { snapshot: ValidatorSetSnapshot; atMs: number } | undefined;
  let inFlight: Promise<ValidatorSetSnapshot> | undefined;

  async function fetchSet(): Promise<ValidatorSetSnapshot> {
    const addresses: string[] = [];
    let quorum = 0;
    let pageToken = "";
    do {
      let page: Awaited<ReturnType<typeof client.listValidators>>;
      try {
        page = await client.listValidators(
          {
            protocolVersion: WALLET_PROTOCOL_VERSION,
            status: ValidatorStatus.ACTIVE,
            pageSize: 500,
            pageToken,
          },
          { timeoutMs },
        );
      } catch (error) {
        throw new Error(
          `cannot read the validator set from the registry: ${ConnectError.from(error).rawMessage}`,
          { cause: error },
        );
      }
      addresses.push(...page.validators.map((validator) => validator.address));
      quorum = page.requiredSignatures;
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    if (quorum < 1) throw new Error("the registry reports no required_signatures");
    const snapshot: ValidatorSetSnapshot = Object.freeze({
      addresses: Object.freeze(addresses),
      quorum,
    });
    cached = { snapshot, atMs: nowMs() };
    return snapshot;
  }

  return {
    getValidatorSet() {
      if (cached !== undefined && nowMs() - cached.atMs < cacheMs) {
        return Promise.resolve(cached.snapshot);
      }
      inFlight ??= fetchSet().finally(() => {
        inFlight = undefined;
      });
      return inFlight;
    },
    close() {
      session?.abort();
    },
  };
}
