import { type ConfigOf, port, serverConfigSpec } from "@tessera/runtime";

/** Environment variables of the wallet: the runtime's server settings plus its peers. */
export const walletConfigSpec = {
  ...serverConfigSpec,
  PORT: port({
    default: 7005,
    doc: "Port serving Connect, gRPC and gRPC-Web (HTTP/2 and HTTP/1.1)",
  }),
} as const;

/** The wallet's parsed, frozen configuration. */
export type WalletConfig = ConfigOf<typeof walletConfigSpec>;
