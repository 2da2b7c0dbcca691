/**
 * Test-only: a whole Tessera batch network as real processes on real ports, each started from its
 * built binary (`services/<name>/dist/main.js`) the way an operator starts it: a wallet whose
 * genesis funds a client and the validators, a registry, validators (the registry binary in its
 * validator role, staked in the wallet as on the devnet), a job server and compute nodes. Keys are
 * made in each service's data directory before anything starts, so every service can be told its
 * peers' addresses; ports are chosen up front, so a stopped job server or node comes back on the
 * same port and data directory. Timings are short (heartbeats, leases, approvals), so failures
 * are noticed in seconds.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { access, mkdir } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import {
  RegistryService,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { type JobServerClient, openJobServerClient } from "@tessera/sdk/job-server-client";
import { SDK_PROTOCOL_VERSION } from "@tessera/sdk/protocol-version";
import { type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";

const servicesDir = fileURLToPath(new URL("../../", import.meta.url));

/** The built entry point of a service package. */
export function serviceEntry(
  name: "wallet" | "registry" | "job-server" | "compute-node" | "gateway",
): string {
  return join(servicesDir, name, "dist", "main.js");
}

/** Rejects naming the missing build when a service has not been built (`pnpm -r build`). */
export async function assertServicesBuilt(): Promise<void> {
  for (const name of ["wallet", "registry", "job-server", "compute-node", "gateway"] as const) {
    await access(serviceEntry(name)).catch(() => {
      throw new Error(`${serviceEntry(name)} is missing: run \`pnpm -r build\` first`);
    });
  }
}

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** The stake each validator locks (as on the devnet); also the registry's minimum. */
export const VALIDATOR_STAKE = 100_000_000n;
/** What genesis gives each validator: ten stakes. */
export const VALIDATOR_FUNDS = 10n * VALIDATOR_STAKE;
/** Proof-of-work bits everywhere: low, so records seal in milliseconds. */
const POW_DIFFICULTY = "4";

/** Timings of the job server, short so lapsed leases and restarts show within seconds. */
export const JOB_SERVER_TIMINGS: Readonly<Record<string, string>> = {
  HEARTBEAT_INTERVAL_MS: "300",
  LEASE_TIMEOUT_MS: "3000",
  ACCEPT_TIMEOUT_MS: "5000",
  SWEEP_INTERVAL_MS: "100",
  DISPATCH_POLL_MS: "200",
  UPDATES_POLL_MS: "100",
  KEEPALIVE_INTERVAL_MS: "1000",
  PEER_TIMEOUT_MS: "20000",
};

/** Timings of the gateway: nodes heartbeat often and a silent one is given up on quickly. */
export const GATEWAY_TIMINGS: Readonly<Record<string, string>> = {
  HEARTBEAT_INTERVAL_MS: "300",
  NODE_TIMEOUT_MS: "1500",
};

/**
 * How long the validators' route approval lasts by default here: short, so a test of an approval
 * that expires before payment waits only seconds. Work whose node dies does not wait for it: the
 * registry replaces the approval of an offline node (tests that show this pass a long one).
 */
export const APPROVAL_TTL_MS = 8_000;

/** Options of {@link startTestNetwork}. */
export interface TestNetworkOptions {
  /** Root directory; each process gets `<dir>/<name>` as its DATA_DIR. */
  readonly dir: string;
  /** Compute nodes to start; default 2. */
  readonly computeNodes?: number;
  /** Validators to start (quorum 2); default 3. */
  readonly validators?: number;
  /** What genesis gives the client; default 1,000,000 base units. */
  readonly clientFunds?: bigint;
  /** Each node's asking price per hour (base units); default 3,600,000 (1 per ms). */
  readonly pricePerHour?: bigint;
  /** PostgreSQL URLs: the job server and wallet then keep their data there instead of SQLite. */
  readonly databaseUrls?: { readonly jobServer?: string; readonly wallet?: string };
  /**
   * Model catalog (MODELS_FILE): when set, a gateway runs too, every node hosts these models and
   * serves them to the gateway and over TensorService, and the registry and validators may read
   * the models' files (MODEL_DIRS = the catalog's folder) to re-run inference tasks.
   */
  readonly modelsFile?: string;
  /** The validators' approval lifetime (APPROVAL_TTL_MS); default {@link APPROVAL_TTL_MS}. */
  readonly approvalTtlMs?: number;
  /** Extra variables for the gateway (e.g. timings). */
  readonly gatewayEnv?: Readonly<Record<string, string>>;
}

/** One compute node of the network. */
export interface NetworkNode {
  /** `node-1`, `node-2`, ... */
  readonly name: string;
  /** The node's address (its key, made before it starts). */
  readonly address: string;
  /** Where its earnings go (PAYOUT_ADDRESS): a key of its own, so payouts are easy to tell. */
  readonly payoutAddress: string;
  /** The running process; undefined while stopped. */
  readonly process: SpawnedService | undefined;
}

/** A running network; see the module comment. */
export interface TestNetwork {
  readonly walletUrl: string;
  readonly walletAddress: string;
  readonly registryUrl: string;
  readonly registryAddress: string;
  readonly jobServerUrl: string;
  readonly jobServerAddress: string;
  /** The gateway's URL and address; empty without {@link TestNetworkOptions.modelsFile}. */
  readonly gatewayUrl: string;
  readonly gatewayAddress: string;
  readonly validatorAddresses: readonly string[];
  /** The client: genesis-funded, it uploads, pays and submits. */
  readonly client: KeyPair;
  /** A key the wallet lets read every balance and history (READERS), to check payouts. */
  readonly auditor: KeyPair;
  readonly nodes: readonly NetworkNode[];
  /** The job server's process (replaced by {@link restartJobServer}). */
  readonly jobServer: SpawnedService;
  /** A job server client signed by the client's key (reconnects by itself after a restart). */
  jobs(): JobServerClient;
  /** A wallet client signed by `keyPair`. */
  wallet(keyPair: KeyPair): Client<typeof WalletService>;
  /** A registry client signed by `keyPair`. */
  registry(keyPair: KeyPair): Client<typeof RegistryService>;
  /** Stops the job server (SIGTERM drains; SIGKILL crashes) and starts it again, same port and data. */
  restartJobServer(signal: NodeJS.Signals): Promise<void>;
  /** Kills a node's process with SIGKILL: no goodbye to anyone. */
  killNode(address: string): Promise<void>;
  /**
   * Starts a stopped node again (same key, port and data); resolves once the registry lists it
   * online again.
   */
  startNode(address: string): Promise<void>;
  /** Process ids of a running node's child processes (its jobs' workers). */
  childProcessesOf(address: string): Promise<number[]>;
  /** Stops every process (nodes first, the wallet last) and closes the clients. */
  close(): Promise<void>;
}

interface NodeSlot {
  name: string;
  address: string;
  payoutAddress: string;
  port: number;
  process: SpawnedService | undefined;
}

/**
 * Starts the network and resolves once validators can route paid jobs: every validator is staked
 * and active in the registry, and every node is listed online there (the nodes register with the
 * job server on their own; jobs submitted before that simply wait in the queue).
 */
export async function startTestNetwork(options: TestNetworkOptions): Promise<TestNetwork> {
  const { dir } = options;
  const validatorCount = options.validators ?? 3;
  const nodeCount = options.computeNodes ?? 2;
  const clientFunds = options.clientFunds ?? 1_000_000n;
  const pricePerHour = options.pricePerHour ?? 3_600_000n;
  const processes: SpawnedService[] = [];
  const closers: Array<() => void> = [];

  const keyOf = async (name: string) => {
    await mkdir(join(dir, name), { recursive: true });
    const { keyPair } = await loadOrCreateServiceKey({
      path: join(dir, name, "key.json"),
      name,
    });
    return keyPair.address;
  };
  const walletAddress = await keyOf("wallet");
  const registryAddress = await keyOf("registry");
  const jobServerAddress = await keyOf("job-server");
  const withGateway = options.modelsFile !== undefined;
  const gatewayAddress = withGateway ? await keyOf("gateway") : "";
  const modelEnv: Record<string, string> =
    options.modelsFile === undefined ? {} : { MODEL_DIRS: dirname(resolve(options.modelsFile)) };
  const validatorNames = Array.from({ length: validatorCount }, (_, i) => `validator-${i + 1}`);
  const validatorAddresses: string[] = [];
  for (const name of validatorNames) validatorAddresses.push(await keyOf(name));
  const nodes: NodeSlot[] = [];
  for (let i = 1; i <= nodeCount; i++) {
    const name = `node-${i}`;
    nodes.push({
      name,
      address: await keyOf(name),
      payoutAddress: generateKeyPair().address,
      port: await freePort(),
      process: undefined,
    });
  }
  const client = generateKeyPair();
  const auditor = generateKeyPair();

  const [walletPort, registryPort, jobServerPort, gatewayPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const url = (port: number) => `http://127.0.0.1:${port}`;
  const walletUrl = url(walletPort);
  const registryUrl = url(registryPort);
  const jobServerUrl = url(jobServerPort);
  const gatewayUrl = withGateway ? url(gatewayPort) : "";
  const common = (name: string, port: number) => ({
    HOST: "127.0.0.1",
    PORT: String(port),
    DATA_DIR: join(dir, name),
    LOG_LEVEL: "info",
    SHUTDOWN_GRACE_MS: "2000",
  });

  const spawn = async (entry: string, env: Record<string, string>) => {
    const started = await spawnService({ entry, env, startTimeoutMs: 30_000 });
    processes.push(started);
    return started;
  };

  try {
    await spawn(serviceEntry("wallet"), {
      ...common("wallet", walletPort),
      REGISTRY_URL: registryUrl,
      VALIDATOR_SET_CACHE_MS: "0",
      READERS: [registryAddress, auditor.address].join(","),
      GENESIS: [
        `${client.address}=${clientFunds}`,
        ...validatorAddresses.map((address) => `${address}=${VALIDATOR_FUNDS}`),
      ].join(","),
      ...(options.databaseUrls?.wallet ? { DATABASE_URL: options.databaseUrls.wallet } : {}),
    });
    await spawn(serviceEntry("registry"), {
      ...common("registry", registryPort),
      REGISTRY_ROLE: "registry",
      VALIDATOR_QUORUM: "2",
      VALIDATOR_MIN_STAKE: String(VALIDATOR_STAKE),
      WALLET_URL: walletUrl,
      WALLET_ADDRESS: walletAddress,
      TRUSTED_REPORTERS: [jobServerAddress, ...(withGateway ? [gatewayAddress] : [])].join(","),
      ...modelEnv,
      JOB_SERVER_URL: jobServerUrl,
      JOB_SERVER_ADDRESS: jobServerAddress,
      POW_DIFFICULTY,
      HEARTBEAT_INTERVAL_MS: "1000",
      HEARTBEAT_TIMEOUT_MS: "5000",
      APPROVAL_TTL_MS: String(options.approvalTtlMs ?? APPROVAL_TTL_MS),
      GOSSIP_INTERVAL_MS: "600000",
    });
    await Promise.all(
      validatorNames.map(async (name) =>
        spawn(serviceEntry("registry"), {
          ...common(name, await freePort()),
          REGISTRY_ROLE: "validator",
          REGISTRY_URL: registryUrl,
          TRUSTED_REGISTRIES: registryAddress,
          TREASURY_ADDRESS: registryAddress,
          WALLET_URL: walletUrl,
          WALLET_ADDRESS: walletAddress,
          VALIDATOR_STAKE: String(VALIDATOR_STAKE),
          JOB_SERVER_URL: jobServerUrl,
          JOB_SERVER_ADDRESS: jobServerAddress,
          POW_DIFFICULTY,
          ...modelEnv,
        }),
      ),
    );

    const jobServerEnv = {
      ...common("job-server", jobServerPort),
      ...JOB_SERVER_TIMINGS,
      POW_DIFFICULTY,
      WALLET_URL: walletUrl,
      WALLET_ADDRESS: walletAddress,
      REGISTRY_URL: registryUrl,
      REGISTRY_ADDRESS: registryAddress,
      READERS: [registryAddress, ...validatorAddresses].join(","),
      ...(options.databaseUrls?.jobServer ? { DATABASE_URL: options.databaseUrls.jobServer } : {}),
    };
    let jobServer = await spawn(serviceEntry("job-server"), jobServerEnv);
    if (withGateway) {
      await spawn(serviceEntry("gateway"), {
        ...common("gateway", gatewayPort),
        ...GATEWAY_TIMINGS,
        POW_DIFFICULTY,
        WALLET_URL: walletUrl,
        WALLET_ADDRESS: walletAddress,
        REGISTRY_URL: registryUrl,
        REGISTRY_ADDRESS: registryAddress,
        MODELS_FILE: options.modelsFile ?? "",
        ...options.gatewayEnv,
      });
    }

    const nodeEnv = (node: NodeSlot) => ({
      ...common(node.name, node.port),
      JOB_SERVER_URL: jobServerUrl,
      JOB_SERVER_ADDRESS: jobServerAddress,
      REGISTRY_URL: registryUrl,
      REGISTRY_ADDRESS: registryAddress,
      POW_DIFFICULTY,
      NVIDIA_SMI: "none",
      NODE_NAME: node.name,
      PRICE_PER_HOUR: String(pricePerHour),
      PAYOUT_ADDRESS: node.payoutAddress,
      MAX_CONCURRENT_JOBS: "2",
      ...(withGateway
        ? {
            GATEWAY_URL: gatewayUrl,
            GATEWAY_ADDRESS: gatewayAddress,
            MODELS_FILE: options.modelsFile ?? "",
            PUBLIC_URL: url(node.port),
          }
        : {}),
    });
    const startNode = async (node: NodeSlot) => {
      node.process = await spawn(serviceEntry("compute-node"), nodeEnv(node));
    };
    await Promise.all(nodes.map(startNode));

    const sign = <S extends DescService>(service: S, baseUrl: string, target: string) => {
      return (keyPair: KeyPair): Client<S> => {
        const session = new Http2SessionManager(baseUrl);
        closers.push(() => session.abort());
        return createClient(
          service,
          createGrpcTransport({
            baseUrl,
            sessionManager: session,
            defaultTimeoutMs: 30_000,
            interceptors: [
              createSigningInterceptor({ keyPair, target, nonceSource: createNonceSource() }),
            ],
          }),
        );
      };
    };
    const wallet = sign(WalletService, walletUrl, walletAddress);
    const registry = sign(RegistryService, registryUrl, registryAddress);
    let jobsClient: JobServerClient | undefined;
    const jobs = () => {
      jobsClient ??= openJobServerClient({
        baseUrl: jobServerUrl,
        address: jobServerAddress,
        keyPair: client,
      });
      return jobsClient;
    };
    closers.push(() => jobsClient?.close());

    await waitUntilReady({
      registry: registry(auditor),
      validatorCount,
      nodeAddresses: nodes.map((node) => node.address),
    });

    const findNode = (address: string) => {
      const node = nodes.find((n) => n.address === address);
      if (node === undefined) throw new Error(`no node ${address} in this network`);
      return node;
    };
    const network: TestNetwork = {
      walletUrl,
      walletAddress,
      registryUrl,
      registryAddress,
      jobServerUrl,
      jobServerAddress,
      gatewayUrl,
      gatewayAddress,
      validatorAddresses,
      client,
      auditor,
      get nodes() {
        return nodes.map((node) => ({ ...node }));
      },
      get jobServer() {
        return jobServer;
      },
      jobs,
      wallet,
      registry,
      async restartJobServer(signal) {
        await jobServer.stop(signal);
        jobServer = await spawn(serviceEntry("job-server"), jobServerEnv);
      },
      async killNode(address) {
        const node = findNode(address);
        await node.process?.stop("SIGKILL");
        node.process = undefined;
      },
      async startNode(address) {
        const node = findNode(address);
        if (node.process !== undefined) return;
        await startNode(node);
        await waitUntilReady({
          registry: registry(auditor),
          validatorCount,
          nodeAddresses: [node.address],
        });
      },
      async childProcessesOf(address) {
        const pid = findNode(address).process?.child.pid;
        if (pid === undefined) return [];
        const { stdout } = await run("ps", ["-o", "pid=", "--ppid", String(pid)]).catch(
          (error: { stdout?: string; code?: number }) => {
            // ps exits 1 when no process matches.
            if (error.code === 1) return { stdout: error.stdout ?? "" };
            throw error;
          },
        );
        return stdout
          .split("\n")
          .map((line) => Number(line.trim()))
          .filter((n) => Number.isInteger(n) && n > 0);
      },
      async close() {
        for (const close of closers.splice(0)) close();
        await stopAll(processes);
      },
    };
    return network;
  } catch (error) {
    for (const close of closers.splice(0)) close();
    await stopAll(processes);
    throw error;
  }
}

/** Stops processes in the reverse order of their start (callers before the services they call). */
async function stopAll(processes: SpawnedService[]): Promise<void> {
  for (const process of processes.splice(0).reverse()) {
    const code = await Promise.race([
      process.stop("SIGTERM"),
      new Promise<"slow">((resolve) => setTimeout(() => resolve("slow"), 10_000).unref()),
    ]);
    if (code === "slow") await process.stop("SIGKILL");
  }
}

async function waitUntilReady(options: {
  registry: Client<typeof RegistryService>;
  validatorCount: number;
  nodeAddresses: readonly string[];
}): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { validators, requiredSignatures } = await options.registry.listValidators({
      protocolVersion: SDK_PROTOCOL_VERSION,
    });
    const active = validators.filter((v) => v.status === ValidatorStatus.ACTIVE).length;
    let nodesOnline = 0;
    for (const nodeAddress of options.nodeAddresses) {
      const answer = await options.registry
        .getNode({ protocolVersion: SDK_PROTOCOL_VERSION, nodeAddress })
        .catch(() => undefined);
      if (answer?.node?.standing?.online === true) nodesOnline += 1;
    }
    if (
      active >= options.validatorCount &&
      requiredSignatures > 0 &&
      nodesOnline === options.nodeAddresses.length
    ) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `the network did not become ready: ${active}/${options.validatorCount} validators active, ${nodesOnline}/${options.nodeAddresses.length} nodes online`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const run = promisify(execFile);

/** The PostgreSQL the suite uses for its fresh databases (trust auth on the loopback). */
export const POSTGRES_URL = "postgres://postgres@127.0.0.1:5432";

/**
 * Creates a database of its own for this run on {@link POSTGRES_URL} (with `psql`), or returns
 * undefined with the reason when PostgreSQL cannot be reached.
 */
export async function createFreshDatabase(
  prefix: string,
): Promise<{ url: string; drop: () => Promise<void> } | { problem: string }> {
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString("hex")}`;
  const psql = (sql: string) =>
    run("psql", [`${POSTGRES_URL}/postgres`, "-v", "ON_ERROR_STOP=1", "-qc", sql], {
      timeout: 15_000,
    });
  try {
    await psql(`create database ${name}`);
  } catch (error) {
    return { problem: (error as Error).message.split("\n")[0] ?? String(error) };
  }
  return {
    url: `${POSTGRES_URL}/${name}`,
    drop: async () => {
      await psql(`drop database if exists ${name} with (force)`);
    },
  };
}
