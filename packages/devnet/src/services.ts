import { join } from "node:path";

/** A Tessera service package: its folder under `services/`, package `@tessera/<name>`. */
export type ServiceBinary = "job-server" | "gateway" | "registry" | "compute-node" | "wallet";

/** The name of one process of the network: a binary's name, or e.g. `validator-1`. */
export type ServiceName = string;

/** One row of the network table. */
export interface ServiceDefinition {
  readonly name: ServiceName;
  /** The service package this process runs (several processes may run one binary). */
  readonly binary: ServiceBinary;
  /** Added to the port base: with the default base 7000 the service listens on 7000 + offset. */
  readonly portOffset: number;
  /** Services it calls. They start (and are healthy) before it, and it gets their URLs. */
  readonly peers: readonly ServiceName[];
  /**
   * Services it calls only later, on demand (the wallet reads the registry's validator set when an
   * escrow is released): it gets their URLs but does not wait for them, which breaks the cycle.
   */
  readonly laterPeers?: readonly ServiceName[];
  /** Fixed environment variables of this service besides the common ones. */
  readonly env: Readonly<Record<string, string>>;
  /**
   * Variables that carry other processes' addresses (their keys'): variable -> a process name,
   * or an {@link AddressList} of several. The launcher makes those processes' keys in their
   * DATA_DIRs before anything starts, so e.g. validators know which registry to trust.
   */
  readonly addressOf?: Readonly<Record<string, ServiceName | AddressList>>;
  /** A variable that carries the service's own URL (e.g. a node's PUBLIC_URL for direct calls). */
  readonly ownUrlVariable?: string;
}

/**
 * Several processes' addresses in one variable: `<address><suffix>` for each, comma-separated,
 * e.g. the wallet's GENESIS `tsr1…=1000,tsr1…=1000`.
 */
export interface AddressList {
  readonly each: readonly ServiceName[];
  /** Written after each address; default none. */
  readonly suffix?: string;
}

/** The stake each devnet validator locks in the wallet (base units); also the registry's minimum. */
export const DEVNET_VALIDATOR_STAKE = 100_000_000n;

/** What each devnet validator is given at genesis: enough for ten stakes (re-registrations). */
export const DEVNET_VALIDATOR_FUNDS = 10n * DEVNET_VALIDATOR_STAKE;

/** compute-node-2's asking price per hour (base units): a one-minute job costs 1000. */
export const DEVNET_NODE_PRICE_PER_HOUR = 60_000n;

const VALIDATORS: readonly ServiceName[] = ["validator-1", "validator-2", "validator-3"];

/**
 * The models the devnet's nodes host and its gateway serves (relative to a service's working
 * directory, `services/<binary>`): the example classifier, `examples/models/catalog.json`.
 */
export const DEVNET_MODELS_FILE = "../../examples/models/catalog.json";

/** Where validators may read hosted models named by `file://` URIs, to re-run inference tasks. */
export const DEVNET_MODEL_DIRS = "../../examples/models";

/**
 * The default port base: job-server 7001, gateway 7002, registry 7003, compute-node 7004,
 * wallet 7005, validator-1..3 7006-7008, compute-node-2 7009.
 */
export const DEFAULT_PORT_BASE = 7000;

/**
 * The network, in start order: every service comes after the peers it calls, so each one finds
 * its peers serving when it starts. Stopping goes in the reverse order, so a service's callers
 * (and the streams they hold open to it) are gone before it drains.
 */
export const SERVICES: readonly ServiceDefinition[] = [
  {
    name: "wallet",
    binary: "wallet",
    portOffset: 5,
    peers: [],
    laterPeers: ["registry"],
    // A development network: the faucet funds test accounts; the registry may read any balance
    // (subnet fee payments); the validators start with the money for their stakes.
    env: { FAUCET_ENABLED: "true" },
    addressOf: {
      READERS: "registry",
      GENESIS: { each: VALIDATORS, suffix: `=${DEVNET_VALIDATOR_FUNDS}` },
    },
  },
  {
    name: "registry",
    binary: "registry",
    portOffset: 3,
    peers: ["wallet"],
    // The job server asks it for validation and reports node events; validation re-executes
    // batch work with artifacts fetched from the job server.
    laterPeers: ["job-server"],
    env: {
      REGISTRY_ROLE: "registry",
      MODEL_DIRS: DEVNET_MODEL_DIRS,
      VALIDATOR_QUORUM: "2",
      VALIDATOR_MIN_STAKE: String(DEVNET_VALIDATOR_STAKE),
    },
    addressOf: {
      WALLET_ADDRESS: "wallet",
      TRUSTED_REPORTERS: { each: ["job-server", "gateway"] },
      JOB_SERVER_ADDRESS: "job-server",
    },
  },
  ...VALIDATORS.map(
    (name, i): ServiceDefinition => ({
      name,
      binary: "registry",
      portOffset: 6 + i,
      peers: ["wallet", "registry"],
      laterPeers: ["job-server"],
      env: {
        REGISTRY_ROLE: "validator",
        VALIDATOR_STAKE: String(DEVNET_VALIDATOR_STAKE),
        MODEL_DIRS: DEVNET_MODEL_DIRS,
      },
      addressOf: {
        TRUSTED_REGISTRIES: "registry",
        TREASURY_ADDRESS: "registry",
        WALLET_ADDRESS: "wallet",
        JOB_SERVER_ADDRESS: "job-server",
      },
    }),
  ),
  {
    name: "job-server",
    binary: "job-server",
    portOffset: 1,
    peers: ["wallet", "registry"],
    env: {},
    // Escrows are checked and settled with the wallet, approvals asked of the registry; the
    // registry and validators may read a job's artifacts to re-execute its work.
    addressOf: {
      WALLET_ADDRESS: "wallet",
      REGISTRY_ADDRESS: "registry",
      READERS: { each: ["registry", ...VALIDATORS] },
    },
  },
  {
    // Inference tasks: it asks the registry's validators to approve routes and prices, checks and
    // settles escrows with the wallet, and streams tasks to the nodes that host the models.
    name: "gateway",
    binary: "gateway",
    portOffset: 2,
    peers: ["wallet", "registry"],
    env: { MODELS_FILE: DEVNET_MODELS_FILE },
    addressOf: { WALLET_ADDRESS: "wallet", REGISTRY_ADDRESS: "registry" },
  },
  {
    name: "compute-node",
    binary: "compute-node",
    portOffset: 4,
    peers: ["registry", "job-server", "gateway"],
    env: { MODELS_FILE: DEVNET_MODELS_FILE },
    addressOf: {
      JOB_SERVER_ADDRESS: "job-server",
      REGISTRY_ADDRESS: "registry",
      GATEWAY_ADDRESS: "gateway",
    },
    ownUrlVariable: "PUBLIC_URL",
  },
  {
    // A second node that asks a price, so paid jobs have somewhere to run (the scheduler places a
    // free job only on a free node, and a paid one on a node whose price it covers), and a job
    // survives losing one node.
    name: "compute-node-2",
    binary: "compute-node",
    portOffset: 9,
    peers: ["registry", "job-server", "gateway"],
    env: { PRICE_PER_HOUR: DEVNET_NODE_PRICE_PER_HOUR.toString(), MODELS_FILE: DEVNET_MODELS_FILE },
    addressOf: {
      JOB_SERVER_ADDRESS: "job-server",
      REGISTRY_ADDRESS: "registry",
      GATEWAY_ADDRESS: "gateway",
    },
    ownUrlVariable: "PUBLIC_URL",
  },
];

/** The highest port offset in {@link SERVICES}; a port base must leave room for it. */
export const MAX_PORT_OFFSET = Math.max(...SERVICES.map((s) => s.portOffset));

/** The environment variable that carries a service's URL to its callers: `JOB_SERVER_URL`, ... */
export function peerUrlVariable(name: ServiceName): string {
  return `${name.toUpperCase().replaceAll("-", "_")}_URL`;
}

/** The port a service listens on for a given port base. */
export function servicePort(service: ServiceDefinition, portBase: number): number {
  return portBase + service.portOffset;
}

/**
 * The URL callers use for a service, `http://<host>:<port>`. A wildcard bind address
 * (`0.0.0.0`, `::`) is dialled on the loopback address.
 */
export function serviceUrl(service: ServiceDefinition, host: string, portBase: number): string {
  const dialHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  const hostPart = dialHost.includes(":") ? `[${dialHost}]` : dialHost;
  return `http://${hostPart}:${servicePort(service, portBase)}`;
}

/** What every service of one network shares; see {@link serviceEnvironment}. */
export interface NetworkSettings {
  /** Address every service binds and is dialled on. */
  host: string;
  portBase: number;
  /** Root data directory; each service gets `<dataDir>/<name>` as DATA_DIR. */
  dataDir: string;
  logLevel: string;
  logFormat: "json" | "pretty";
  shutdownGraceMs: number;
}

/**
 * The variables the launcher sets for one service (they override anything inherited):
 * HOST, PORT, DATA_DIR, LOG_LEVEL, LOG_FORMAT, SHUTDOWN_GRACE_MS, the URL of each peer, and the
 * service's own fixed variables (REGISTRY_ROLE for the registry).
 */
export function serviceEnvironment(
  service: ServiceDefinition,
  network: NetworkSettings,
  services: readonly ServiceDefinition[] = SERVICES,
): Record<string, string> {
  const env: Record<string, string> = {
    HOST: network.host,
    PORT: String(servicePort(service, network.portBase)),
    DATA_DIR: serviceDataDir(service, network.dataDir),
    LOG_LEVEL: network.logLevel,
    LOG_FORMAT: network.logFormat,
    SHUTDOWN_GRACE_MS: String(network.shutdownGraceMs),
  };
  for (const peerName of [...service.peers, ...(service.laterPeers ?? [])]) {
    const peer = services.find((s) => s.name === peerName);
    if (peer === undefined) throw new Error(`${service.name}: unknown peer ${peerName}`);
    env[peerUrlVariable(peerName)] = serviceUrl(peer, network.host, network.portBase);
  }
  if (service.ownUrlVariable !== undefined) {
    env[service.ownUrlVariable] = serviceUrl(service, network.host, network.portBase);
  }
  return { ...env, ...service.env };
}

/** The directory a service keeps its files in: `<dataDir>/<name>`. */
export function serviceDataDir(service: ServiceDefinition, dataDir: string): string {
  return join(dataDir, service.name);
}

/** The file a service's output is appended to: `<dataDir>/logs/<name>.log`. */
export function serviceLogFile(service: ServiceDefinition, dataDir: string): string {
  return join(dataDir, "logs", `${service.name}.log`);
}

/** The compiled entry point of a service: `<repoRoot>/services/<binary>/dist/main.js`. */
export function serviceEntry(service: ServiceDefinition, repoRoot: string): string {
  return join(repoRoot, "services", service.binary, "dist", "main.js");
}

/** The key file a service signs with: `<its DATA_DIR>/key.json` (each service's default). */
export function serviceKeyFile(service: ServiceDefinition, dataDir: string): string {
  return join(serviceDataDir(service, dataDir), "key.json");
}
