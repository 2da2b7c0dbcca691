import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { createVerifyingInterceptor } from "@tessera/auth";
import { isAddress } from "@tessera/identity/address";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { readModelCatalog } from "@tessera/ml/model-catalog";
import { GatewayClientService } from "@tessera/proto/tessera/gateway/v1/gateway_client_service_pb.js";
import { GatewayComputeService } from "@tessera/proto/tessera/gateway/v1/gateway_compute_service_pb.js";
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
} from "@tessera/store";
import { createClientService } from "./client-service.js";
import { createComputeService } from "./compute-service.js";
import type { GatewayConfig } from "./config.js";
import { createDispatcher } from "./dispatch/dispatcher.js";
import { createModelDirectory } from "./models/model-directory.js";
import { createNodeBook } from "./nodes/node-book.js";
import { createSubnetPayment } from "./payments/subnet-payment.js";
import { createSweeper } from "./sweeper.js";
import { createTaskEngine } from "./tasks/task-engine.js";
import { createTaskTable } from "./tasks/task-table.js";

/** The Tessera RPC services the gateway answers. */
export const gatewayServices: readonly DescService[] = [
  GatewayClientService,
  GatewayComputeService,
];

/** A configuration problem found after parsing (a rule that spans variables). */
export class GatewaySetupError extends Error {
  override readonly name = "GatewaySetupError";
}

function checkConfig(config: GatewayConfig): bigint {
  const problems: string[] = [];
  if (config.WALLET_ADDRESS !== "" && !isAddress(config.WALLET_ADDRESS)) {
    problems.push("WALLET_ADDRESS: not an address");
  }
  if (config.REGISTRY_ADDRESS !== "" && !isAddress(config.REGISTRY_ADDRESS)) {
    problems.push("REGISTRY_ADDRESS: not an address");
  }
  if (!/^[0-9]{1,20}$/.test(config.SUBNET_ID) || BigInt(config.SUBNET_ID) >= 2n ** 64n) {
    problems.push("SUBNET_ID: not a subnet id (a decimal 64-bit unsigned integer)");
  }
  if (config.NODE_TIMEOUT_MS <= config.HEARTBEAT_INTERVAL_MS) {
    problems.push("NODE_TIMEOUT_MS: must be longer than HEARTBEAT_INTERVAL_MS");
  }
  if (Math.max(config.MAX_INPUT_BYTES, config.MAX_OUTPUT_BYTES) >= config.MAX_MESSAGE_BYTES) {
    problems.push("MAX_MESSAGE_BYTES: must be above MAX_INPUT_BYTES and MAX_OUTPUT_BYTES");
  }
  if (config.TASK_TIMEOUT_MS > config.MAX_TASK_TIMEOUT_MS) {
    problems.push("TASK_TIMEOUT_MS: above MAX_TASK_TIMEOUT_MS");
  }
  if (problems.length > 0) throw new GatewaySetupError(problems.join("; "));
  return BigInt(config.SUBNET_ID);
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
 * Starts the gateway: loads its key (DATA_DIR/key.json unless KEY_FILE), the pinned catalog
 * (MODELS_FILE) and its peers (registry, wallet, when their addresses are configured), and serves
 * GatewayClientService and GatewayComputeService with every state-changing call signed. Tasks
 * live in memory; a sweeper watches node liveness, deadlines, re-routing and settlement. Closing
 * the returned server ends the task streams and subscriptions, drains, then stops the sweeper.
 */
export async function startGatewayServer(
  config: GatewayConfig,
  logger: Logger,
): Promise<ServiceServer> {
  const subnetId = checkConfig(config);
  const cleanups = createCleanups(logger);
  let server: ServiceServer | undefined;
  try {
    const keyFile = config.KEY_FILE || join(config.DATA_DIR, "key.json");
    const { keyPair, created } = await loadOrCreateServiceKey({ path: keyFile, name: "gateway" });
    logger.info({ address: keyPair.address, keyFile, created }, "key loaded");
    const pinned = config.MODELS_FILE === "" ? [] : await readModelCatalog(config.MODELS_FILE);

    const store = await openStore<NonceStoreTables>({
      dataDir: config.DATA_DIR,
      fileName: "gateway.sqlite",
      migrations: { ...nonceStoreMigrations },
      // Only the nonce store writes this database and it syncs each batch before answering, so
      // an accepted nonce is still durable; the fsync just runs off the event loop (three
      // signed calls per task made the per-commit fsync the gateway's largest stall).
      sqliteDurability: "explicit",
      logger,
    });
    cleanups.add(() => store.close());

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
    const tasks = createTaskTable();
    const nodes = createNodeBook({ timeoutMs: config.NODE_TIMEOUT_MS });
    const directory = createModelDirectory(pinned.map((model) => model.descriptor));
    const dispatcher = createDispatcher({ tasks, nodes, now, logger });
    cleanups.add(() => dispatcher.close());
    const subnetPayment = createSubnetPayment({
      registry,
      subnetId,
      cacheMs: config.SUBNET_CACHE_MS,
      now,
    });
    const engine = createTaskEngine({
      gatewayAddress: keyPair.address,
      subnetId,
      tasks,
      nodes,
      directory,
      dispatcher,
      subnetPayment,
      registry,
      wallet,
      limits: {
        maxInputBytes: config.MAX_INPUT_BYTES,
        maxOutputBytes: config.MAX_OUTPUT_BYTES,
        maxTasksInFlight: config.MAX_TASKS_IN_FLIGHT,
        taskTimeoutMs: config.TASK_TIMEOUT_MS,
        maxTaskTimeoutMs: config.MAX_TASK_TIMEOUT_MS,
        escrowMarginMs: config.ESCROW_MARGIN_MS,
        retentionMs: config.TASK_RETENTION_MS,
        retryMs: Math.max(config.SWEEP_INTERVAL_MS, 1000),
      },
      now,
      logger,
    });
    cleanups.add(() => engine.idle());
    tasks.onChange(() => dispatcher.wake());
    const sweeper = createSweeper({
      intervalMs: config.SWEEP_INTERVAL_MS,
      sweep: () => engine.sweep(),
      logger,
    });
    cleanups.add(() => sweeper.close());

    const shutdown = new AbortController();
    server = await startServiceServer({
      service: "gateway",
      logger,
      ...serverOptionsFromConfig(config),
      files: gatewayServices.map((service) => service.file),
      routes: (router) => {
        router.service(
          GatewayClientService,
          createClientService({
            engine,
            tasks,
            nodes,
            directory,
            subnetPayment,
            subnetId,
            keyPair,
            tokenTtlMs: config.TOKEN_TTL_MS,
            now,
            shutdown: shutdown.signal,
          }),
        );
        router.service(
          GatewayComputeService,
          createComputeService({
            engine,
            nodes,
            directory,
            dispatcher,
            registry,
            subnetId,
            minPowDifficulty: config.POW_DIFFICULTY,
            heartbeatIntervalMs: config.HEARTBEAT_INTERVAL_MS,
            now,
            logger,
            shutdown: shutdown.signal,
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
    logger.info(
      {
        address: keyPair.address,
        subnetId: subnetId.toString(),
        pinnedModels: pinned.length,
        wallet: wallet === undefined ? "none" : config.WALLET_URL,
        registry: registry === undefined ? "none (free subnet)" : config.REGISTRY_URL,
      },
      "gateway ready",
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
          nodes.closeAll();
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
