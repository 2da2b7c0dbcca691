import { bool, type ConfigOf, int, list, port, serverConfigSpec, str, url } from "@tessera/runtime";

/** Environment variables of the wallet. Empty text means "not set". */
export const walletConfigSpec = {
  ...serverConfigSpec,
  PORT: port({
    default: 7005,
    doc: "Port serving Connect, gRPC and gRPC-Web (HTTP/2 and HTTP/1.1)",
  }),
  DATA_DIR: str({
    default: ".tessera-data/wallet",
    doc: "Directory of the SQLite ledger and the key file",
  }),
  DATABASE_URL: str({
    default: "",
    doc: "PostgreSQL URL (postgres://...); empty keeps the embedded SQLite file in DATA_DIR",
  }),
  KEY_FILE: str({
    default: "",
    doc: "The wallet's key file (clients sign requests to its address); empty means DATA_DIR/key.json, created on first start",
  }),
  REGISTRY_URL: url({
    default: "http://127.0.0.1:7003",
    doc: "Base URL of the registry, read for the validator set that approves escrow releases",
  }),
  VALIDATOR_SET_CACHE_MS: int({
    default: 5000,
    min: 0,
    doc: "How long a fetched validator set is reused",
  }),
  GENESIS: list({
    doc: "Genesis allocations minted once on a new ledger: comma-separated `address=amount` (base units)",
  }),
  FAUCET_ENABLED: bool({
    default: false,
    doc: "Serve the development Faucet RPC (never on a real network)",
  }),
  FAUCET_PER_CALL_LIMIT: str({
    default: "1000000000",
    doc: "Most base units one Faucet call credits",
  }),
  FAUCET_PER_DAY_LIMIT: str({
    default: "10000000000",
    doc: "Most base units one address gets from the faucet per UTC day",
  }),
  READERS: list({
    doc: "Comma-separated addresses (e.g. the registry) allowed to read any balance, history or escrow",
  }),
} as const;

/** The wallet's parsed, frozen configuration. */
export type WalletConfig = ConfigOf<typeof walletConfigSpec>;
