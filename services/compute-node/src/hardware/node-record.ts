/**
 * The compute node's self-description (tessera.common.v1.NodeRecord): its hardware, runtimes,
 * formats, price and capacity, sealed with a proof of work and its key's signature so the job
 * server and the registry accept it.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { KeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import {
  type Device,
  DeviceSchema,
  DeviceType,
  type Endpoint,
  EndpointSchema,
  type ModelDescriptor,
  type NodeRecord,
  NodeRecordSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { NODE_PROTOCOL_VERSION, NODE_SOFTWARE_VERSION } from "../protocol-version.js";
import type { Hardware } from "./hardware.js";

/** What the node offers beyond its hardware. */
export interface NodeOffer {
  /** Human-readable name. */
  readonly name: string;
  /** Where clients reach the node directly; empty when it is behind NAT. */
  readonly publicUrl: string;
  /** Free-form region; may be empty. */
  readonly region: string;
  readonly maxConcurrentJobs: number;
  readonly maxModelSizeBytes: bigint;
  /** Asking price per hour, in base units. */
  readonly pricePerHour: bigint;
  /** Address paid for the work; empty means the node's own. */
  readonly payoutAddress: string;
  /** Runtimes the executors provide, e.g. "onnxruntime", "tfjs". */
  readonly runtimes: readonly string[];
  /** Model and data formats the executors read, e.g. "onnx", "csv". */
  readonly supportedFormats: readonly string[];
  /** Job kinds the node runs, e.g. "training", "inference". */
  readonly capabilities: readonly string[];
  /** Models the node hosts warm (their published descriptors); default none. */
  readonly models?: readonly ModelDescriptor[] | undefined;
}

/** The machine's devices as records carry them: the CPU first, then each GPU as a CUDA device. */
export function hardwareDevices(hardware: Hardware): Device[] {
  return [
    create(DeviceSchema, {
      deviceType: DeviceType.CPU,
      deviceName: hardware.cpuModel,
      totalMemoryBytes: hardware.ramTotalBytes,
      availableMemoryBytes: hardware.ramAvailableBytes,
      computeUnits: hardware.cpuCores,
    }),
    ...hardware.gpus.map((gpu) =>
      create(DeviceSchema, {
        deviceType: DeviceType.CUDA,
        deviceName: gpu.name,
        totalMemoryBytes: gpu.totalMemoryBytes,
        availableMemoryBytes: gpu.freeMemoryBytes,
        driverVersion: gpu.driverVersion,
      }),
    ),
  ];
}

/** The endpoint of a public URL, or undefined for "" (behind NAT). */
export function endpointOf(publicUrl: string): Endpoint | undefined {
  if (publicUrl === "") return undefined;
  const url = new URL(publicUrl);
  const port = url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port);
  return create(EndpointSchema, {
    host: url.hostname,
    port,
    url: publicUrl.replace(/\/+$/, ""),
  });
}

/**
 * The node's record before sealing: every field but the key, proof of work and signature.
 * `sequence` is the issue time in milliseconds, so a restarted node's record replaces the old one.
 */
export function buildNodeRecord(hardware: Hardware, offer: NodeOffer, issuedAt: Date): NodeRecord {
  const endpoint = endpointOf(offer.publicUrl);
  return create(NodeRecordSchema, {
    protocolVersion: NODE_PROTOCOL_VERSION,
    nodeType: NodeType.COMPUTE,
    name: offer.name,
    softwareVersion: NODE_SOFTWARE_VERSION,
    ...(endpoint === undefined ? {} : { endpoint }),
    region: offer.region,
    devices: hardwareDevices(hardware),
    cpuCores: hardware.cpuCores,
    ramTotalBytes: hardware.ramTotalBytes,
    capabilities: [...offer.capabilities],
    runtimes: [...offer.runtimes],
    supportedFormats: [...offer.supportedFormats],
    models: [...(offer.models ?? [])],
    maxModelSizeBytes: offer.maxModelSizeBytes,
    supportsTerminalAccess: false,
    payoutAddress: offer.payoutAddress,
    pricePerHour: offer.pricePerHour.toString(10),
    maxConcurrentJobs: offer.maxConcurrentJobs,
    sequence: BigInt(issuedAt.getTime()),
    issuedAt: timestampFromDate(issuedAt),
  });
}

/** Options of {@link sealComputeNodeRecord}. */
export interface SealOptions {
  readonly hardware: Hardware;
  readonly offer: NodeOffer;
  readonly keyPair: KeyPair;
  /** Leading zero bits of the proof of work. */
  readonly powDifficulty: number;
  /** Issue time; default now. */
  readonly issuedAt?: Date | undefined;
  /** Stops the proof of work. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * The node's record, sealed: its address and key, `payout_address` defaulted to the node's own,
 * a proof of work at `powDifficulty`, and the signature. About 2^powDifficulty hashes; yields to
 * the event loop while it works.
 */
export function sealComputeNodeRecord(options: SealOptions): Promise<NodeRecord> {
  const { keyPair, offer } = options;
  const record = buildNodeRecord(
    options.hardware,
    { ...offer, payoutAddress: offer.payoutAddress || keyPair.address },
    options.issuedAt ?? new Date(),
  );
  return sealNodeRecord(record, keyPair, options.powDifficulty, { signal: options.signal });
}
