import {
  type ConfigOf,
  int,
  list,
  oneOf,
  port,
  serverConfigSpec,
  str,
  url,
} from "@tessera/runtime";

/** Environment variables of the registry binary, in either role. Empty text means "not set". */
export const registryConfigSpec = {
  ...serverConfigSpec,
  PORT: port({
    default: 7003,
    doc: "Port serving Connect, gRPC and gRPC-Web (HTTP/2 and HTTP/1.1)",
  }),
  REGISTRY_ROLE: oneOf(["registry", "validator"], {
    default: "registry",
    doc: "`registry` keeps the node directory, subnets and validator set; `validator` holds one validator key and signs checks",
  }),
  DATA_DIR: str({
    default: ".tessera-data/registry",
    doc: "Directory of the SQLite database and the key file",
  }),
  DATABASE_URL: str({
    default: "",
    doc: "PostgreSQL URL (postgres://...); empty keeps the embedded SQLite file in DATA_DIR",
  }),
  KEY_FILE: str({
    default: "",
    doc: "The process's key file; empty means DATA_DIR/key.json, created on first start",
  }),
  PUBLIC_URL: str({
    default: "",
    doc: "URL peers reach this process at (gossip, validator endpoint); empty means the listening URL",
  }),
  WALLET_URL: url({
    default: "http://127.0.0.1:7005",
    doc: "Base URL of the wallet, for subnet fees and stakes",
  }),
  WALLET_ADDRESS: str({
    default: "",
    doc: "The wallet's address (calls to it are signed for it); empty means no wallet: no subnets can be created and validators register without stake. The wallet's READERS must list the registry's address",
  }),
  JOB_SERVER_URL: url({
    default: "http://127.0.0.1:7001",
    doc: "Base URL of the job server, to fetch a batch job's artifacts when re-executing its work",
  }),
  JOB_SERVER_ADDRESS: str({
    default: "",
    doc: "The job server's address; set, completion checks re-run a sample of batch inference and evaluation work (the job server's READERS must list this process); empty means batch completions are judged on signatures and result hashes",
  }),
  TREASURY_ADDRESS: str({
    default: "",
    doc: "Address paid the treasury share and subnet fees; empty means the registry's own address (registry role); required in the validator role",
  }),
  POW_DIFFICULTY: int({
    default: 16,
    min: 0,
    max: 40,
    doc: "Leading zero bits a node record's proof of work must have (each bit doubles the cost)",
  }),
  PAYMENT_SPLIT_BPS: str({
    default: "8000/1000/500/500",
    doc: "Default payment split in basis points: compute/gateway/validators/treasury",
  }),
  APPROVAL_TTL_MS: int({ default: 300_000, min: 1, doc: "Lifetime of a preprocessing approval" }),
  MAX_APPROVAL_TTL_MS: int({ default: 900_000, min: 1, doc: "Longest approval a validator signs" }),
  INFERENCE_TASK_COMPUTE_MS: int({
    default: 1000,
    min: 1,
    doc: "Compute time an inference task is priced at",
  }),
  MODEL_DIRS: list({
    doc: "Folders from which hosted models named by file:// URIs may be read to re-run inference tasks (comma-separated); models elsewhere on disk are refused, http(s) models are always fetched by content hash",
  }),
  MODELS_FILE: str({
    default: "",
    doc: "A model catalog (tessera.models/v1) pinning model ids to content digests; a node naming other bytes for a pinned model is not believed. Empty pins nothing",
  }),
  CLOCK_SKEW_MS: int({
    default: 30_000,
    min: 0,
    doc: "Clock skew tolerated on signed requests and approvals",
  }),
  HEARTBEAT_INTERVAL_MS: int({
    default: 10_000,
    min: 1,
    doc: "Interval nodes are told to heartbeat at",
  }),
  HEARTBEAT_TIMEOUT_MS: int({
    default: 30_000,
    min: 1,
    doc: "A node with no heartbeat for this long is offline",
  }),
  STRIKES_PER_BAN: int({
    default: 3,
    min: 1,
    doc: "Strikes that ban a node (for 24 h, then 48 h, then 168 h)",
  }),
  VALIDATOR_QUORUM: int({
    default: 2,
    min: 1,
    doc: "Validator signatures (M of N) an approval needs",
  }),
  VALIDATOR_TIMEOUT_MS: int({
    default: 5000,
    min: 1,
    doc: "How long the registry waits for each validator",
  }),
  VALIDATOR_MIN_STAKE: str({
    default: "0",
    doc: "Smallest stake (base units) a validator registers with, checked in the wallet; above 0 needs WALLET_ADDRESS",
  }),
  VALIDATOR_SLASH_AMOUNT: str({
    default: "0",
    doc: "Base units slashed from a validator's stake (to the treasury) each time it answers with a signature that does not verify; 0 never slashes",
  }),
  VALIDATOR_STAKE: str({
    default: "0",
    doc: "Validator role: the stake (base units) this validator locks in the wallet, with its registry as arbiter, and registers with; above 0 needs WALLET_ADDRESS",
  }),
  TRUSTED_REPORTERS: list({
    doc: "Comma-separated addresses (job servers) allowed to report node events and ask for validation",
  }),
  TRUSTED_REGISTRIES: list({
    doc: "Validator role: comma-separated registry addresses allowed to ask this validator to sign (required)",
  }),
  REGISTRY_URL: url({
    default: "http://127.0.0.1:7003",
    doc: "Validator role: the registry this validator registers with and reads from",
  }),
  REGISTRY_PEERS: str({
    default: "",
    doc: "Registry role: metagraph peers, comma-separated `address@url` or `url`",
  }),
  GOSSIP_INTERVAL_MS: int({
    default: 30_000,
    min: 1,
    doc: "Registry role: interval between gossip rounds",
  }),
} as const;

/** The registry's parsed, frozen configuration. */
export type RegistryConfig = ConfigOf<typeof registryConfigSpec>;
