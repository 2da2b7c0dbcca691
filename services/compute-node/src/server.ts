import { hostname, totalmem } from "node:os";
import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createVerifyingInterceptor } from "@tessera/auth";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { MODEL_FORMATS, SUPPORTED_RUNTIMES } from "@tessera/ml/capabilities";
import { createContentCache } from "@tessera/ml/content-cache";
import { DeviceType, type NodeRecord } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { TensorService } from "@tessera/proto/tessera/compute/v1/tensor_service_pb.js";
import { GatewayComputeService } from "@tessera/proto/tessera/gateway/v1/gateway_compute_service_pb.js";
import { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import {
  type Logger,
  type ServiceServer,
  serverOptionsFromConfig,
  startServiceServer,
} from "@tessera/runtime";
import {
  createNonceStore,
  type NonceStoreTables,
  nonceStoreMigrations,
  openStore,
} from "@tessera/store";
import type { Capacity } from "./agent/capacity.js";
import { buildNodeLoad, type NodeAgent } from "./agent/node-agent.js";
import { type ComputeNodeConfig, serverMessageLimitBytes, trustedTokenIssuers } from "./config.js";
import { detectHardware } from "./hardware/hardware.js";
import { createMachineMonitor } from "./hardware/machine-monitor.js";
import { endpointOf, type NodeOffer, sealComputeNodeRecord } from "./hardware/node-record.js";
import {
  type HostedModels,
  loadHostedModels,
  publishedDescriptor,
} from "./models/hosted-models.js";
import { type GatewayLink, startGatewayLink } from "./peers/gateway-link.js";
import { connectJobServer, type JobServerLinkOptions } from "./peers/job-server-link.js";
import { startRegistryPresence } from "./peers/registry-presence.js";
import { createSignedTransport } from "./peers/signed-transport.js";
import { sealSynapseEndpoints } from "./tensor/synapse-endpoints.js";
import { createTensorService, tensorServiceRequiresSignature } from "./tensor/tensor-service.js";

/** The Tessera RPC services the compute node answers. */
export const computeNodeServices: readonly DescService[] = [TensorService];

/** Job kinds the executors run. */
const CAPABILITIES = ["training", "inference", "evaluation", "preprocessing"] as const;
/** The capability of a node that hosts models warm and serves TensorService on them. */
const TENSOR_CAPABILITY = "tensor";
/** Model and data formats the executors read. */
const SUPPORTED_FORMATS = [...MODEL_FORMATS, "csv", "ndjson"] as const;

/** Test seams of {@link startComputeNode}: how job processes run, how often progress goes out. */
export type ComputeNodeOverrides = Pick<JobServerLinkOptions, "runProcess" | "progressIntervalMs">;

/** A running compute node: its server, its identity and its agent. */
export interface ComputeNode extends ServiceServer {
  /** The node's address (its id everywhere). */
  readonly address: string;
  /** The node's sealed record, as registered. */
  readonly record: NodeRecord;
  /** The agent towards the job server; undefined when JOB_SERVER_ADDRESS is not set. */
  readonly agent: NodeAgent | undefined;
  /** The link to the gateway; undefined when GATEWAY_ADDRESS is not set. */
  readonly gateway: GatewayLink | undefined;
}

/**
 * Starts the compute node: loads its key, detects its hardware, loads the models of MODELS_FILE
 * (digest-checked, kept warm), seals its record (listing them) and one SynapseEndpoint per model,
 * serves its RPC port (health, metrics, TensorService with every Forward/Backward signed and
 * token-checked) and, when JOB_SERVER_ADDRESS is set, registers with the job server and takes
 * jobs; when GATEWAY_ADDRESS is set, takes inference tasks from the gateway; when
 * REGISTRY_ADDRESS is set, also keeps its registry entry. Closing it stops taking work, gives
 * running jobs back (RELEASED), lets running tasks finish within the grace, and drains the server.
 */
export async function startComputeNode(
  config: ComputeNodeConfig,
  logger: Logger,
  overrides: ComputeNodeOverrides = {},
): Promise<ComputeNode> {
  const keyFile = config.KEY_FILE || join(config.DATA_DIR, "key.json");
  const { keyPair, created } = await loadOrCreateServiceKey({
    path: keyFile,
    name: "compute-node",
  });
  logger.info({ address: keyPair.address, keyFile, created }, "key loaded");

  const { hardware, gpuProblem } = await detectHardware({ command: config.NVIDIA_SMI });
  if (gpuProblem !== undefined) logger.warn({ problem: gpuProblem }, "GPU detection failed");
  logger.info(
    {
      cpu: hardware.cpuModel,
      cores: hardware.cpuCores,
      ramBytes: Number(hardware.ramTotalBytes),
      gpus: hardware.gpus.map((gpu) => gpu.name),
    },
    "hardware detected",
  );

  const capacity: Capacity = {
    maxConcurrentJobs: config.MAX_CONCURRENT_JOBS,
    memoryBudgetBytes: config.MAX_MEMORY_BYTES || Math.floor(totalmem() / 2),
    defaultJobDurationMs: config.DEFAULT_JOB_DURATION_MS,
    runtimes: [...SUPPORTED_RUNTIMES],
    // The executors run on the CPU (onnxruntime's CPU provider, tfjs): GPUs are published in the
    // record, but a job that requires one is refused rather than silently run on the CPU.
    deviceTypes: [DeviceType.CPU],
  };

  // Released last added first, once, when the node closes or fails to start.
  const releases: Array<() => unknown> = [];
  const release = async () => {
    for (const step of releases.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        logger.warn({ err: error }, "cleanup failed");
      }
    }
  };
  let agent: NodeAgent | undefined;
  let registry: { close(): Promise<void> } | undefined;
  let gateway: GatewayLink | undefined;
  try {
    // Models share the content cache with jobs: both are addressed by digest.
    const hostedModels: HostedModels = await loadHostedModels({
      modelsFile: config.MODELS_FILE,
      cache: createContentCache({ dir: join(config.DATA_DIR, "cache") }),
      logger,
    });
    releases.push(() => hostedModels.close());
    const models = hostedModels.models.map(publishedDescriptor);
    if (config.MODELS_FILE === "") logger.warn("MODELS_FILE is not set: the node hosts no models");

    const offer: NodeOffer = {
      name: config.NODE_NAME || hostname(),
      publicUrl: config.PUBLIC_URL,
      region: config.REGION,
      maxConcurrentJobs: capacity.maxConcurrentJobs,
      maxModelSizeBytes: BigInt(config.MAX_MODEL_SIZE_BYTES),
      pricePerHour: config.PRICE_PER_HOUR,
      payoutAddress: config.PAYOUT_ADDRESS,
      runtimes: capacity.runtimes,
      supportedFormats: SUPPORTED_FORMATS,
      capabilities: models.length > 0 ? [...CAPABILITIES, TENSOR_CAPABILITY] : CAPABILITIES,
      models,
    };
    const [record, synapses] = await Promise.all([
      sealComputeNodeRecord({ hardware, offer, keyPair, powDifficulty: config.POW_DIFFICULTY }),
      sealSynapseEndpoints({
        keyPair,
        models,
        endpoint: endpointOf(config.PUBLIC_URL),
        powDifficulty: config.POW_DIFFICULTY,
      }),
    ]);

    const nonceStore = await openStore<NonceStoreTables>({
      dataDir: config.DATA_DIR,
      fileName: "compute-node.sqlite",
      migrations: nonceStoreMigrations,
      logger,
    });
    releases.push(() => nonceStore.close());

    const monitor = createMachineMonitor({ hardware, nvidiaSmi: config.NVIDIA_SMI });
    releases.push(() => monitor.close());
    const nonceSource = createNonceSource();
    let closingStarted = false;
    const nodeLoad = () =>
      agent?.load() ?? buildNodeLoad(capacity, monitor.measure(), [], !closingStarted);

    if (config.JOB_SERVER_ADDRESS !== "") {
      const link = await connectJobServer({
        baseUrl: config.JOB_SERVER_URL,
        address: config.JOB_SERVER_ADDRESS,
        keyPair,
        nonceSource,
        record,
        capacity,
        dataDir: config.DATA_DIR,
        localDataDirs: config.LOCAL_DATA_DIRS,
        measure: () => monitor.measure(),
        shutdownGraceMs: config.SHUTDOWN_GRACE_MS,
        logger,
        ...overrides,
      });
      releases.push(() => link.close());
      agent = link.agent;
    } else {
      logger.warn("JOB_SERVER_ADDRESS is not set: the node takes no batch jobs");
    }

    if (config.REGISTRY_ADDRESS !== "") {
      const registryTransport = createSignedTransport({
        baseUrl: config.REGISTRY_URL,
        target: config.REGISTRY_ADDRESS,
        keyPair,
        nonceSource,
      });
      releases.push(() => registryTransport.close());
      registry = startRegistryPresence({
        registry: createClient(RegistryService, registryTransport.transport),
        record,
        load: nodeLoad,
        logger,
      });
    }

    const tensorService = createTensorService({
      nodeAddress: keyPair.address,
      trustedIssuers: trustedTokenIssuers(config),
      maxTensorBytes: config.MAX_TENSOR_BYTES,
      model: (modelId) => hostedModels.host.get(modelId),
      record,
      synapses,
      logger,
    });
    const serverOptions = serverOptionsFromConfig(config);
    const server = await startServiceServer({
      service: "compute-node",
      logger,
      ...serverOptions,
      limits: { ...serverOptions.limits, maxMessageBytes: serverMessageLimitBytes(config) },
      files: computeNodeServices.map((service) => service.file),
      routes: (router) => {
        router.service(TensorService, tensorService);
      },
      interceptors: [
        createVerifyingInterceptor({
          selfAddress: keyPair.address,
          nonceStore: createNonceStore(nonceStore),
          requiresSignature: tensorServiceRequiresSignature,
        }),
      ],
    });

    if (config.GATEWAY_ADDRESS !== "") {
      if (models.length === 0) {
        logger.warn("GATEWAY_ADDRESS is set but the node hosts no models: no gateway link");
      } else {
        const gatewayTransport = createSignedTransport({
          baseUrl: config.GATEWAY_URL,
          target: config.GATEWAY_ADDRESS,
          keyPair,
          nonceSource,
        });
        releases.push(() => gatewayTransport.close());
        gateway = startGatewayLink({
          gateway: createClient(GatewayComputeService, gatewayTransport.transport),
          keyPair,
          record,
          model: (modelId) => hostedModels.host.get(modelId),
          maxBatchSize: hostedModels.maxBatchSize,
          load: nodeLoad,
          shutdownGraceMs: config.SHUTDOWN_GRACE_MS,
          logger,
        });
      }
    }
    agent?.start();
    logger.info(
      {
        address: keyPair.address,
        jobServer: config.JOB_SERVER_ADDRESS || undefined,
        gateway: gateway === undefined ? undefined : config.GATEWAY_ADDRESS,
        registry: config.REGISTRY_ADDRESS || undefined,
        models: models.map((model) => model.modelId),
        slots: capacity.maxConcurrentJobs,
        memoryBudgetBytes: capacity.memoryBudgetBytes,
      },
      "compute-node ready",
    );

    let closing: Promise<void> | undefined;
    const close = async () => {
      closingStarted = true;
      // Giving jobs back, finishing tasks and draining the port run side by side, within one grace.
      await Promise.all([agent?.close(), gateway?.close(), registry?.close(), server.close()]);
      await release();
    };
    return {
      port: server.port,
      url: server.url,
      health: server.health,
      shutdownGraceMs: server.shutdownGraceMs,
      address: keyPair.address,
      record,
      agent,
      gateway,
      close() {
        closing ??= close();
        return closing;
      },
    };
  } catch (error) {
    await Promise.all([agent?.close(), gateway?.close(), registry?.close()]);
    await release();
    throw error;
  }
}
