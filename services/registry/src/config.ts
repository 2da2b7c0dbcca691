import { type ConfigOf, oneOf, port, serverConfigSpec, url } from "@tessera/runtime";

/** Environment variables of the registry binary: server settings, its role and its peers. */
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
  WALLET_URL: url({
    default: "http://127.0.0.1:7005",
    doc: "Base URL of the wallet, for subnet fees and stakes",
  }),
} as const;

/** The registry's parsed, frozen configuration. */
export type RegistryConfig = ConfigOf<typeof registryConfigSpec>;
