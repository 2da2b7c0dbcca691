import { type ConfigOf, port, serverConfigSpec, url } from "@tessera/runtime";

/** Environment variables of the gateway: the runtime's server settings plus its peers. */
export const gatewayConfigSpec = {
  ...serverConfigSpec,
  PORT: port({
    default: 7002,
    doc: "Port serving Connect, gRPC and gRPC-Web (HTTP/2 and HTTP/1.1)",
  }),
  REGISTRY_URL: url({
    default: "http://127.0.0.1:7003",
    doc: "Base URL of the registry, for validation and discovery",
  }),
  WALLET_URL: url({ default: "http://127.0.0.1:7005", doc: "Base URL of the wallet, for escrows" }),
} as const;

/** The gateway's parsed, frozen configuration. */
export type GatewayConfig = ConfigOf<typeof gatewayConfigSpec>;
