import { type ConfigOf, int, port, serverConfigSpec, str, url } from "@tessera/runtime";

const MIB = 1024 * 1024;

/** Environment variables of the gateway: the runtime's server settings, its peers and its limits. */
export const gatewayConfigSpec = {
  ...serverConfigSpec,
  PORT: port({
    default: 7002,
    doc: "Port serving Connect, gRPC and gRPC-Web (HTTP/2 and HTTP/1.1)",
  }),
  MAX_MESSAGE_BYTES: int({
    default: 20 * MIB,
    min: 1,
    doc: "Largest request or response message; above MAX_INPUT_BYTES and MAX_OUTPUT_BYTES so their own limits answer first",
  }),
  DATA_DIR: str({
    default: ".tessera-data/gateway",
    doc: "Directory of the key file and the nonce store (tasks themselves live in memory)",
  }),
  KEY_FILE: str({
    default: "",
    doc: "The gateway's key file (it signs calls to the wallet and registry, arbitrates escrows and issues access tokens); empty means DATA_DIR/key.json, created on first start",
  }),
  SUBNET_ID: str({
    default: "0",
    doc: "The subnet this gateway serves (decimal); 0 is the default subnet, which is paid",
  }),
  MODELS_FILE: str({
    default: "",
    doc: "Pinned model catalog (tessera.models/v1 JSON): its models are listed even before a node serves them, and a node's model whose content digest differs from the pinned one is not accepted; empty pins nothing",
  }),
  REGISTRY_URL: url({
    default: "http://127.0.0.1:7003",
    doc: "Base URL of the registry, for validation, subnets and nodes",
  }),
  REGISTRY_ADDRESS: str({
    default: "",
    doc: "The registry's address (calls are signed for it); empty means no registry: the subnet is treated as free and nodes are not checked against the directory",
  }),
  WALLET_URL: url({ default: "http://127.0.0.1:7005", doc: "Base URL of the wallet, for escrows" }),
  WALLET_ADDRESS: str({
    default: "",
    doc: "The wallet's address (calls are signed for it); empty means no wallet: paid tasks are refused (unavailable)",
  }),
  POW_DIFFICULTY: int({
    default: 16,
    min: 0,
    max: 40,
    doc: "Leading zero bits a compute node record's proof of work must have",
  }),
  HEARTBEAT_INTERVAL_MS: int({
    default: 2000,
    min: 1,
    doc: "Interval compute nodes are told to heartbeat at",
  }),
  NODE_TIMEOUT_MS: int({
    default: 6000,
    min: 1,
    doc: "A node with no heartbeat, or with its task stream closed, for this long is gone: its unfinished tasks are re-routed",
  }),
  TASK_TIMEOUT_MS: int({
    default: 60_000,
    min: 1,
    doc: "Time a task may take from submission to completion when the client gives none",
  }),
  MAX_TASK_TIMEOUT_MS: int({
    default: 600_000,
    min: 1,
    doc: "Longest time a task may take; a client's larger timeout_ms is lowered to it",
  }),
  MAX_INPUT_BYTES: int({
    default: 4 * MIB,
    min: 1,
    doc: "Largest task input; larger ones are refused with resource_exhausted",
  }),
  MAX_OUTPUT_BYTES: int({
    default: 16 * MIB,
    min: 1,
    doc: "Largest result a node may submit; larger ones are refused with resource_exhausted",
  }),
  MAX_TASKS_IN_FLIGHT: int({
    default: 10_000,
    min: 1,
    doc: "Most unfinished tasks the gateway holds; more are refused with resource_exhausted",
  }),
  TASK_RETENTION_MS: int({
    default: 600_000,
    min: 0,
    doc: "How long a finished task (and its result) stays readable before it is dropped",
  }),
  TOKEN_TTL_MS: int({
    default: 300_000,
    min: 1,
    doc: "Default and longest lifetime of a direct-access token (RequestDirectAccess)",
  }),
  ESCROW_MARGIN_MS: int({
    default: 60_000,
    min: 0,
    doc: "How long a task's escrow must outlive the task's deadline, so settling never races its expiry",
  }),
  SUBNET_CACHE_MS: int({
    default: 30_000,
    min: 0,
    doc: "How long the registry's answer on whether the subnet is free is reused",
  }),
  PEER_TIMEOUT_MS: int({
    default: 15_000,
    min: 1,
    doc: "Deadline of each call to the wallet and the registry",
  }),
  SWEEP_INTERVAL_MS: int({
    default: 250,
    min: 10,
    doc: "Interval of the sweeper: node liveness, deadlines, re-routing, settlement retries, retention",
  }),
} as const;

/** The gateway's parsed, frozen configuration. */
export type GatewayConfig = ConfigOf<typeof gatewayConfigSpec>;
