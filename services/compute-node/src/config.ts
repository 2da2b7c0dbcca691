import { isAddress } from "@tessera/identity/address";
import {
  type ConfigOf,
  int,
  list,
  port,
  serverConfigSpec,
  str,
  url,
  type VarSpec,
} from "@tessera/runtime";

/** A decimal string of integer base units (money), parsed to bigint. */
function amount(opts: { default: bigint; doc: string }): VarSpec<bigint> {
  return Object.freeze({
    type: "integer base units",
    default: opts.default,
    doc: opts.doc,
    parse: (raw: string) =>
      /^(?:0|[1-9][0-9]{0,38})$/.test(raw)
        ? { ok: true as const, value: BigInt(raw) }
        : {
            ok: false as const,
            problem: `must be a decimal integer of base units, got ${JSON.stringify(raw)}`,
          },
  });
}

/** An address (`tsr1…`, checksum checked) or empty. */
function addressOrEmpty(doc: string): VarSpec<string> {
  return Object.freeze({
    type: "address",
    default: "",
    doc,
    parse: (raw: string) =>
      isAddress(raw)
        ? { ok: true as const, value: raw }
        : { ok: false as const, problem: `must be an address (tsr1…), got ${JSON.stringify(raw)}` },
  });
}

/** A comma-separated list of addresses (`tsr1…`, checksums checked); empty means none. */
function addressList(doc: string): VarSpec<readonly string[]> {
  const spec = list({ doc });
  return Object.freeze({
    ...spec,
    type: "comma-separated addresses",
    parse: (raw: string) => {
      const parsed = spec.parse(raw);
      if (!parsed.ok) return parsed;
      const bad = parsed.value.filter((item) => !isAddress(item));
      return bad.length === 0
        ? parsed
        : {
            ok: false as const,
            problem: `must be addresses (tsr1…), got ${bad.map((item) => JSON.stringify(item)).join(", ")}`,
          };
    },
  });
}

/** An http(s) URL or empty; trailing slashes are removed. */
function urlOrEmpty(doc: string): VarSpec<string> {
  const spec = url({ doc });
  return Object.freeze({ ...spec, type: "http(s) URL or empty", default: "" });
}

/**
 * Environment variables of the compute node: the runtime's server settings, its peers (job
 * server, registry, gateway) with the addresses it signs its calls for, and what it offers
 * (capacity, memory, price). Empty text means "not set".
 */
export const computeNodeConfigSpec = {
  ...serverConfigSpec,
  PORT: port({
    default: 7004,
    doc: "Port serving Connect, gRPC and gRPC-Web (HTTP/2 and HTTP/1.1)",
  }),
  DATA_DIR: str({
    default: ".tessera-data/compute-node",
    doc: "Directory of the key file, the content cache (models, datasets) and the jobs' work directories",
  }),
  KEY_FILE: str({
    default: "",
    doc: "The node's key file (its address is its id everywhere); empty means DATA_DIR/key.json, created on first start",
  }),
  JOB_SERVER_URL: url({
    default: "http://127.0.0.1:7001",
    doc: "Base URL of the job server whose assignment stream the node opens",
  }),
  JOB_SERVER_ADDRESS: addressOrEmpty(
    "The job server's address, which the node signs its calls for; empty: the node takes no batch jobs",
  ),
  GATEWAY_URL: url({
    default: "http://127.0.0.1:7002",
    doc: "Base URL of the gateway whose task stream the node opens",
  }),
  GATEWAY_ADDRESS: addressOrEmpty(
    "The gateway's address, which the node signs its calls for; empty: the node takes no inference tasks from a gateway",
  ),
  MODELS_FILE: str({
    default: "",
    doc: "Model catalog (JSON, format tessera.models/v1) of the models the node loads at start, keeps warm and serves over TensorService and to its gateway; empty: the node hosts no models",
  }),
  TRUSTED_TOKEN_ISSUERS: addressList(
    "Addresses whose TensorService access tokens the node accepts; empty means GATEWAY_ADDRESS and JOB_SERVER_ADDRESS (those that are set)",
  ),
  MAX_TENSOR_BYTES: int({
    default: 16 * 1024 * 1024,
    min: 1,
    max: 1024 * 1024 * 1024,
    doc: "Most tensor bytes one Forward or Backward request may carry (all its buffers together); larger requests fail with resource_exhausted naming this limit. The server's message limit is raised to at least twice this (plus 64 KiB of framing), so requests up to that size reach the node's own check; larger ones are refused by the transport, also with resource_exhausted",
  }),
  REGISTRY_URL: url({
    default: "http://127.0.0.1:7003",
    doc: "Base URL of the registry the node registers with",
  }),
  REGISTRY_ADDRESS: addressOrEmpty(
    "The registry's address; when set, the node also registers and heartbeats with the registry so validators can route paid jobs to it",
  ),
  NODE_NAME: str({
    default: "",
    doc: "Human-readable name in the node's record; empty means the host name",
  }),
  PUBLIC_URL: urlOrEmpty(
    "URL clients reach the node at for direct TensorService calls; empty: behind NAT, no endpoint is published",
  ),
  REGION: str({ default: "", doc: "Free-form region in the node's record, e.g. eu-west" }),
  MAX_CONCURRENT_JOBS: int({
    default: 2,
    min: 1,
    max: 256,
    doc: "Jobs the node runs at once, each in its own process",
  }),
  MAX_MEMORY_BYTES: int({
    default: 0,
    min: 0,
    doc: "Memory all running jobs may use together; 0 means half of the machine's RAM. A job that declares no limit gets an equal share per slot",
  }),
  DEFAULT_JOB_DURATION_MS: int({
    default: 6 * 3_600_000,
    min: 1,
    doc: "Wall-clock limit of a job whose spec sets no max_duration_ms",
  }),
  MAX_MODEL_SIZE_BYTES: int({
    default: 4 * 1024 ** 3,
    min: 1,
    doc: "Largest model the node accepts, published in its record",
  }),
  PRICE_PER_HOUR: amount({
    default: 0n,
    doc: "Asking price per hour of compute, in base units (published in the node's record)",
  }),
  PAYOUT_ADDRESS: addressOrEmpty("Address paid for the node's work; empty means the node's own"),
  POW_DIFFICULTY: int({
    default: 16,
    min: 0,
    max: 40,
    doc: "Leading zero bits of the proof of work sealed into the node's record; at least the registry's and job server's minimum",
  }),
  LOCAL_DATA_DIRS: list({
    doc: "Comma-separated directories whose files jobs may read through file:// references (the node's own datasets, e.g. for federated training); empty: none",
  }),
  NVIDIA_SMI: str({
    default: "nvidia-smi",
    doc: "Command that lists NVIDIA GPUs; when it is absent or fails the node offers its CPU only. `none` skips GPU detection",
  }),
} as const;

/** The compute node's parsed, frozen configuration. */
export type ComputeNodeConfig = ConfigOf<typeof computeNodeConfigSpec>;

/**
 * The issuers whose access tokens the node accepts: TRUSTED_TOKEN_ISSUERS, or, when that is
 * empty, the gateway and the job server the node works for.
 */
export function trustedTokenIssuers(config: ComputeNodeConfig): readonly string[] {
  if (config.TRUSTED_TOKEN_ISSUERS.length > 0) return config.TRUSTED_TOKEN_ISSUERS;
  return [config.GATEWAY_ADDRESS, config.JOB_SERVER_ADDRESS].filter((address) => address !== "");
}

/** Framing a Forward/Backward request carries beyond its tensor bytes (names, shapes, token). */
const TENSOR_MESSAGE_OVERHEAD_BYTES = 64 * 1024;

/**
 * The server's message limit: MAX_MESSAGE_BYTES, raised to twice MAX_TENSOR_BYTES plus framing
 * so that a request somewhat over the tensor limit still reaches the node's own check and gets
 * its message naming MAX_TENSOR_BYTES; only a request above this hard ceiling is cut off by the
 * transport (resource_exhausted too, without the node's explanation).
 */
export function serverMessageLimitBytes(config: ComputeNodeConfig): number {
  return Math.max(
    config.MAX_MESSAGE_BYTES,
    2 * config.MAX_TENSOR_BYTES + TENSOR_MESSAGE_OVERHEAD_BYTES,
  );
}
