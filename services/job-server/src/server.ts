import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { createVerifyingInterceptor } from "@tessera/auth";
import { isAddress } from "@tessera/identity/address";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { ArtifactService } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { JobService } from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { JobStatusService } from "@tessera/proto/tessera/job/v1/job_status_service_pb.js";
import { NodeService } from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import {
  type Logger,
  type ServiceServer,
  serverOptionsFromConfig,
  startServiceServer,
} from "@tessera/runtime";
import { createRegistryPort, createWalletPort } from "@tessera/sdk/peer-clients";
import {
  createNonceStore,
  type NonceStoreTables,
  nonceStoreMigrations,
  openStore,
  type Store,
} from "@tessera/store";
import { createArtifactAccess } from "./artifact-access.js";
import { createArtifactService } from "./artifacts/artifact-service.js";
import { createArtifactStore } from "./artifacts/artifact-store.js";
import { artifactMigrations } from "./artifacts/migrations.js";
import type { ArtifactTables } from "./artifacts/tables.js";
import type { JobServerConfig } from "./config.js";
import { createDispatcher } from "./dispatch/dispatcher.js";
import { createJobService } from "./job-service.js";
import { createJobStatusService } from "./job-status-service.js";
import { createJobQueue } from "./jobs/job-queue.js";
import { createJobWatch } from "./jobs/job-watch.js";
import { createQueueCore } from "./jobs/queue-core.js";
import { createLeaseBook } from "./leases/lease-book.js";
import { createSweeper } from "./leases/sweeper.js";
import { createNodeService } from "./node-service.js";
import { createAssignmentHub } from "./nodes/assignment-hub.js";
import { createNodeBook } from "./nodes/node-book.js";
import { createNodeEventReporter } from "./payments/node-events.js";
import { createSettlement } from "./payments/settlement.js";
import { createScheduler } from "./scheduler/scheduler.js";
import { jobServerMigrations } from "./store/migrations.js";
import type { JobServerTables } from "./store/tables.js";

/** The Tessera RPC services the central job server answers. */
export const jobServerServices: readonly DescService[] = [
  JobService,
  NodeService,
  JobStatusService,
  ArtifactService,
];

/** A configuration problem found after parsing (a rule that spans variables). */
export class JobServerSetupError extends Error {
  override readonly name = "JobServerSetupError";
}

/** Options of {@link startJobServerServer} beyond the configuration. */
export interface JobServerStartOptions {
  /**
   * PostgreSQL schema to keep the tables in (created if missing); default the server's
   * search_path. Tests give each server group its own.
   */
  readonly storeSchema?: string | undefined;
}

/** Everything the job server keeps in its database. */
export type JobServerDatabase = JobServerTables & ArtifactTables & NonceStoreTables;

function checkAddresses(config: JobServerConfig): void {
  const problems = [
    ...(config.WALLET_ADDRESS !== "" && !isAddress(config.WALLET_ADDRESS)
      ? ["WALLET_ADDRESS: not an address"]
      : []),
    ...(config.REGISTRY_ADDRESS !== "" && !isAddress(config.REGISTRY_ADDRESS)
      ? ["REGISTRY_ADDRESS: not an address"]
      : []),
    ...config.READERS.filter((reader) => !isAddress(reader)).map(
      (reader) => `READERS: not an address: ${reader}`,
    ),
  ];
  if (problems.length > 0) throw new JobServerSetupError(problems.join("; "));
}

/** Things to release, last added first; `run` releases them once. */
function createCleanups(logger: Logger) {
  const pending: (() => unknown)[] = [];
  return {
    add(cleanup: () => unknown) {
      pending.push(cleanup);
    },
    async run() {
      for (const cleanup of pending.splice(0).reverse()) {
        try {
          await cleanup();
        } catch (error) {
          logger.warn({ err: error }, "cleanup failed");
        }
      }
    },
  };
}

/**
 * Starts the central job server: opens its queue (SQLite in DATA_DIR, or PostgreSQL shared by
 * replicas), its artifact store and its peers (wallet, registry, when their addresses are
 * configured), starts the scheduling loop and the sweeper, and serves JobService, NodeService,
 * JobStatusService and ArtifactService with every call signed. Closing the returned server ends
 * the long-lived streams, drains, then stops the loops and closes the store.
 */
export async function startJobServerServer(
  config: JobServerConfig,
  logger: Logger,
  options: JobServerStartOptions = {},
): Promise<ServiceServer> {
  checkAddresses(config);
  const cleanups = createCleanups(logger);
  let server: ServiceServer | undefined;
  try {
    const keyFile = config.KEY_FILE || join(config.DATA_DIR, "key.json");
    const { keyPair, created } = await loadOrCreateServiceKey({
      path: keyFile,
      name: "job-server",
    });
    logger.info({ address: keyPair.address, keyFile, created }, "key loaded");

    const store = await openStore<JobServerDatabase>({
      ...(config.DATABASE_URL ? { databaseUrl: config.DATABASE_URL } : {}),
      dataDir: config.DATA_DIR,
      fileName: "job-server.sqlite",
      migrations: { ...nonceStoreMigrations, ...jobServerMigrations, ...artifactMigrations },
      logger,
      ...(options.storeSchema === undefined ? {} : { schema: options.storeSchema }),
    });
    cleanups.add(() => store.close());
    const artifacts = await createArtifactStore({
      store,
      dataDir: config.DATA_DIR,
      uploadTtlMs: config.ARTIFACT_UPLOAD_TTL_MS,
      logger,
    });
    cleanups.add(() => artifacts.close());

    const nonceSource = createNonceSource();
    const peer = (url: string, address: string) => ({
      url,
      address,
      keyPair,
      timeoutMs: config.PEER_TIMEOUT_MS,
      nonceSource,
    });
    const wallet =
      config.WALLET_ADDRESS === ""
        ? undefined
        : createWalletPort(peer(config.WALLET_URL, config.WALLET_ADDRESS));
    if (wallet !== undefined) cleanups.add(() => wallet.close());
    const registry =
      config.REGISTRY_ADDRESS === ""
        ? undefined
        : createRegistryPort(peer(config.REGISTRY_URL, config.REGISTRY_ADDRESS));
    if (registry !== undefined) cleanups.add(() => registry.close());

    const now = Date.now;
    const jobStore = store as unknown as Store<JobServerTables>;
    const core = createQueueCore({ store: jobStore, now });
    const queue = createJobQueue({ core, maxQueuedPerClient: config.MAX_QUEUED_JOBS_PER_CLIENT });
    const leases = createLeaseBook({
      core,
      leaseMs: config.LEASE_TIMEOUT_MS,
      acceptMs: Math.min(config.ACCEPT_TIMEOUT_MS, config.LEASE_TIMEOUT_MS),
      serverAddress: keyPair.address,
    });
    const nodes = createNodeBook({
      store: jobStore,
      now,
      minPowDifficulty: config.POW_DIFFICULTY,
      offlineAfterMs: config.LEASE_TIMEOUT_MS,
    });
    const hub = createAssignmentHub();
    const dispatcher = createDispatcher({
      scheduler: createScheduler(),
      queue,
      leases,
      hub,
      registry,
      serverAddress: keyPair.address,
      logger,
      now,
      pollMs: config.DISPATCH_POLL_MS,
      approvalTimeoutMs: config.PEER_TIMEOUT_MS,
      excludeMs: config.LEASE_TIMEOUT_MS,
      activeJobIds: (node) => leases.activeJobIds(node),
      readNode: (address) => nodes.get(address),
      refreshMs: Math.max(1000, config.DISPATCH_POLL_MS * 5),
    });
    cleanups.add(() => dispatcher.close());
    const watch = createJobWatch();
    const settlement = createSettlement({ core, nodes, wallet, registry, logger });
    cleanups.add(() => settlement.idle());
    const events =
      registry === undefined ? undefined : createNodeEventReporter({ registry, logger, now });
    if (events !== undefined) cleanups.add(() => events.idle());
    core.onChanges((changes) => {
      watch.observe(changes);
      dispatcher.observe(changes);
      events?.observe(changes);
    });
    hub.onChange((address, connected) => {
      if (!connected) dispatcher.nodeUnavailable(address);
    });

    const startedAt = now();
    const sweeper = createSweeper({
      intervalMs: config.SWEEP_INTERVAL_MS,
      logger,
      steps: [
        {
          name: "lapsed leases",
          // After a restart, nodes get one lease period to reconnect and renew.
          ready: () => now() - startedAt >= config.LEASE_TIMEOUT_MS,
          run: () => leases.lapseExpired(),
        },
        { name: "time limits", run: () => leases.enforceTimeLimits(config.HEARTBEAT_INTERVAL_MS) },
        { name: "expired jobs", run: () => leases.expireJobs() },
        {
          name: "offline nodes",
          run: async () => {
            for (const address of await nodes.markOffline()) {
              if (!hub.isConnected(address)) dispatcher.nodeUnavailable(address);
            }
          },
        },
        { name: "settlements", run: () => settlement.retryDue() },
        { name: "cancellations", run: () => dispatcher.deliverCancellations() },
      ],
    });
    cleanups.add(() => sweeper.close());

    const shutdown = new AbortController();
    const access = createArtifactAccess({ queue, leases, readers: config.READERS });
    const readers = new Set(config.READERS);
    const specDefaults = {
      maxAttempts: config.DEFAULT_MAX_ATTEMPTS,
      jobTtlMs: config.DEFAULT_JOB_TTL_MS,
      maxDurationMs: config.DEFAULT_MAX_DURATION_MS,
    };
    server = await startServiceServer({
      service: "job-server",
      logger,
      ...serverOptionsFromConfig(config),
      files: jobServerServices.map((service) => service.file),
      routes: (router) => {
        router.service(
          JobService,
          createJobService({
            queue,
            settlement,
            wallet,
            watch,
            serverAddress: keyPair.address,
            specDefaults,
            now,
            updatesPollMs: config.UPDATES_POLL_MS,
            shutdown: shutdown.signal,
          }),
        );
        router.service(
          NodeService,
          createNodeService({
            nodes,
            leases,
            dispatcher,
            hub,
            registry,
            keyPair,
            heartbeatIntervalMs: config.HEARTBEAT_INTERVAL_MS,
            leaseMs: config.LEASE_TIMEOUT_MS,
            keepaliveMs: config.KEEPALIVE_INTERVAL_MS,
            readers,
            logger,
            now,
            shutdown: shutdown.signal,
          }),
        );
        router.service(
          JobStatusService,
          createJobStatusService({
            leases,
            nodes,
            settlement,
            getArtifact: (artifactId) => artifacts.getArtifact(artifactId),
          }),
        );
        router.service(
          ArtifactService,
          createArtifactService({
            artifacts,
            canRead: (caller, artifact) => access.canRead(caller, artifact),
            canUpload: (caller, target) => access.canUpload(caller, target),
          }),
        );
      },
      onClosed: () => cleanups.run(),
      interceptors: [
        createVerifyingInterceptor({
          selfAddress: keyPair.address,
          nonceStore: createNonceStore(store),
        }),
      ],
    });
    void sweeper.tick();
    dispatcher.wake();
    logger.info(
      {
        address: keyPair.address,
        wallet: wallet === undefined ? "none" : config.WALLET_URL,
        registry: registry === undefined ? "none" : config.REGISTRY_URL,
      },
      "job-server ready",
    );
    const running = server;
    let closing: Promise<void> | undefined;
    return {
      port: running.port,
      url: running.url,
      health: running.health,
      shutdownGraceMs: running.shutdownGraceMs,
      close() {
        closing ??= (() => {
          // Long-lived streams end first, so draining does not wait out their deadlines.
          shutdown.abort();
          hub.closeAll();
          watch.wakeAll();
          return running.close();
        })();
        return closing;
      },
    };
  } catch (error) {
    await (server ? server.close() : cleanups.run());
    throw error;
  }
}
