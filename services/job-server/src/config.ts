import { type ConfigOf, int, list, port, serverConfigSpec, str, url } from "@tessera/runtime";

/** Environment variables of the central job server. Empty text means "not set". */
export const jobServerConfigSpec = {
  ...serverConfigSpec,
  PORT: port({
    default: 7001,
    doc: "Port serving Connect, gRPC and gRPC-Web (HTTP/2 and HTTP/1.1)",
  }),
  DATA_DIR: str({
    default: ".tessera-data/job-server",
    doc: "Directory of the SQLite queue, the artifact files and the key file",
  }),
  DATABASE_URL: str({
    default: "",
    doc: "PostgreSQL URL (postgres://...); empty keeps the embedded SQLite file in DATA_DIR. Replicas over one PostgreSQL share the queue",
  }),
  KEY_FILE: str({
    default: "",
    doc: "The job server's key file (it signs calls to the wallet and registry, and arbitrates escrows); empty means DATA_DIR/key.json, created on first start",
  }),
  WALLET_URL: url({ default: "http://127.0.0.1:7005", doc: "Base URL of the wallet, for escrows" }),
  WALLET_ADDRESS: str({
    default: "",
    doc: "The wallet's address (calls are signed for it); empty means no wallet: paid jobs are refused",
  }),
  REGISTRY_URL: url({
    default: "http://127.0.0.1:7003",
    doc: "Base URL of the registry, for validation and node events",
  }),
  REGISTRY_ADDRESS: str({
    default: "",
    doc: "The registry's address (calls are signed for it); empty means no registry: paid jobs are refused and node events are not reported",
  }),
  READERS: list({
    doc: "Comma-separated addresses (validators) allowed to read every artifact and node's metrics",
  }),
  POW_DIFFICULTY: int({
    default: 16,
    min: 0,
    max: 40,
    doc: "Leading zero bits a node record's proof of work must have",
  }),
  HEARTBEAT_INTERVAL_MS: int({
    default: 10_000,
    min: 1,
    doc: "Interval nodes are told to heartbeat at",
  }),
  LEASE_TIMEOUT_MS: int({
    default: 30_000,
    min: 1,
    doc: "Lease duration: a lease not renewed (heartbeat, progress) for this long lapses and its job is requeued; a node silent this long is offline",
  }),
  ACCEPT_TIMEOUT_MS: int({
    default: 10_000,
    min: 1,
    doc: "How long a node has to accept (NotifyJobAccepted) or start an assignment before its lease lapses",
  }),
  DEFAULT_MAX_ATTEMPTS: int({
    default: 3,
    min: 1,
    max: 10,
    doc: "Attempts of a job whose spec says 0 (expired leases and node errors end an attempt)",
  }),
  DEFAULT_JOB_TTL_MS: int({
    default: 86_400_000,
    min: 1,
    doc: "Lifetime of a job whose spec has no expires_at: it fails (NO_ELIGIBLE_NODE or EXPIRED) if not completed by then",
  }),
  DEFAULT_MAX_DURATION_MS: int({
    default: 3_600_000,
    min: 1,
    doc: "Wall-clock limit of one attempt when the spec's max_duration_ms is 0",
  }),
  MAX_QUEUED_JOBS_PER_CLIENT: int({
    default: 1000,
    min: 1,
    doc: "Most unfinished jobs one client may have; more are refused with resource_exhausted",
  }),
  SWEEP_INTERVAL_MS: int({
    default: 1000,
    min: 10,
    doc: "Interval of the sweeper: lapsed leases, time limits, expired jobs, settlement retries",
  }),
  DISPATCH_POLL_MS: int({
    default: 1000,
    min: 10,
    doc: "Interval at which queued jobs are looked at without a wake-up (jobs submitted to other replicas)",
  }),
  UPDATES_POLL_MS: int({
    default: 500,
    min: 10,
    doc: "Interval at which StreamJobUpdates reads the update log without a wake-up (changes made by other replicas)",
  }),
  KEEPALIVE_INTERVAL_MS: int({
    default: 5000,
    min: 100,
    doc: "Interval of StreamKeepalive messages on an idle assignment stream",
  }),
  PEER_TIMEOUT_MS: int({
    default: 15_000,
    min: 1,
    doc: "Deadline of each call to the wallet and the registry",
  }),
  ARTIFACT_UPLOAD_TTL_MS: int({
    default: 86_400_000,
    min: 1,
    doc: "Lifetime of an uncommitted artifact upload after its last chunk",
  }),
} as const;

/** The central job server's parsed, frozen configuration. */
export type JobServerConfig = ConfigOf<typeof jobServerConfigSpec>;
