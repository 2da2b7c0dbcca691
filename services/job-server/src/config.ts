import { type ConfigOf, port, serverConfigSpec, url } from "@tessera/runtime";

/** Environment variables of the central job server: the runtime's server settings plus its peers. */
export const jobServerConfigSpec = {
  ...serverConfigSpec,
  PORT: port({
    default: 7001,
    doc: "Port serving Connect, gRPC and gRPC-Web (HTTP/2 and HTTP/1.1)",
  }),
  WALLET_URL: url({ default: "http://127.0.0.1:7005", doc: "Base URL of the wallet, for escrows" }),
  REGISTRY_URL: url({
    default: "http://127.0.0.1:7003",
    doc: "Base URL of the registry, for nodes and validation",
  }),
} as const;

/** The central job server's parsed, frozen configuration. */
export type JobServerConfig = ConfigOf<typeof jobServerConfigSpec>;
