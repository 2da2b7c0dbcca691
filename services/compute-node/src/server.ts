import { hostname, totalmem } from "node:os";
import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { type ConnectRouter, createClient } from "@connectrpc/connect";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { MODEL_FORMATS, SUPPORTED_RUNTIMES } from "@tessera/ml/capabilities";
import { DeviceType, type NodeRecord } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { TensorService } from "@tessera/proto/tessera/compute/v1/tensor_service_pb.js";
import { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import {
  type Logger,
  type ServiceServer,
  serverOptionsFromConfig,
  startServiceServer,
} from "@tessera/runtime";
import type { Capacity } from "./agent/capacity.js";
import { buildNodeLoad, type NodeAgent } from "./agent/node-agent.js";
import type { ComputeNodeConfig } from "./config.js";
import { detectHardware } from "./hardware/hardware.js";
import { createMachineMonitor } from "./hardware/machine-monitor.js";
import { type NodeOffer, sealComputeNodeRecord } from "./hardware/node-record.js";
import { connectJobServer, type JobServerLinkOptions } from "./peers/job-server-link.js";
import { startRegistryPresence } from "./peers/registry-presence.js";
import { createSignedTransport } from "./peers/signed-transport.js";

/** The Tessera RPC services the compute node answers. */
export const computeNodeServices: readonly DescService[] = [TensorService];

/** Job kinds the executors run. */
const CAPABILITIES = ["training", "inference", "evaluation", "preprocessing"] as const;
/** Model and data formats the executors read. */
const SUPPORTED_FORMATS = [...MODEL_FORMATS, "csv", "ndjson"] as const;

/**
 * Registers the compute node's services. TensorService's behaviour lands with issue #6; until
 * then it is registered without methods, so every RPC answers `unimplemented` instead of
 * pretending.
 */
function registerComputeNodeRoutes(router: ConnectRouter): void {
  for (const service of computeNodeServices) router.service(service, {});
}

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
}

/**
 * Starts the compute node: loads its key, detects its hardware, seals its record, serves its
 * RPC port (health, metrics, TensorService) and, when JOB_SERVER_ADDRESS is set, registers with
 * the job server and takes jobs; when REGISTRY_ADDRESS is set, also keeps its registry entry.
 * Closing it stops taking work, gives running jobs back (RELEASED), and drains the server.
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
    capabilities: CAPABILITIES,
  };
  const record = await sealComputeNodeRecord({
    hardware,
    offer,
    keyPair,
    powDifficulty: config.POW_DIFFICULTY,
  });

  const monitor = createMachineMonitor({ hardware, nvidiaSmi: config.NVIDIA_SMI });
  const nonceSource = createNonceSource();
  const releases: Array<() => void> = [() => monitor.close()];
  let agent: NodeAgent | undefined;
  let registry: { close(): Promise<void> } | undefined;
  try {
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
      const currentAgent = agent;
      registry = startRegistryPresence({
        registry: createClient(RegistryService, registryTransport.transport),
        record,
        load: () => currentAgent?.load() ?? buildNodeLoad(capacity, monitor.measure(), [], false),
        logger,
      });
    }

    const server = await startServiceServer({
      service: "compute-node",
      logger,
      ...serverOptionsFromConfig(config),
      files: computeNodeServices.map((service) => service.file),
      routes: registerComputeNodeRoutes,
    });
    agent?.start();
    logger.info(
      {
        address: keyPair.address,
        jobServer: config.JOB_SERVER_ADDRESS || undefined,
        registry: config.REGISTRY_ADDRESS || undefined,
        slots: capacity.maxConcurrentJobs,
        memoryBudgetBytes: capacity.memoryBudgetBytes,
      },
      "compute-node ready",
    );

    let closing: Promise<void> | undefined;
    const close = async () => {
      // Giving jobs back and draining the port run side by side, within one grace.
      await Promise.all([agent?.close(), registry?.close(), server.close()]);
      for (const release of releases) release();
    };
    return {
      port: server.port,
      url: server.url,
      health: server.health,
      shutdownGraceMs: server.shutdownGraceMs,
      address: keyPair.address,
      record,
      agent,
      close() {
        closing ??= close();
        return closing;
      },
    };
  } catch (error) {
    await Promise.all([agent?.close(), registry?.close()]);
    for (const release of releases) release();
    throw error;
  }
}
