import { type ConfigOf, port, serverConfigSpec, url } from "@tessera/runtime";

/** Environment variables of the compute node: the runtime's server settings plus its peers. */
export const computeNodeConfigSpec = {
  ...serverConfigSpec,
  PORT: port({
    default: 7004,
    doc: "Port serving Connect, gRPC and gRPC-Web (HTTP/2 and HTTP/1.1)",
  }),
  JOB_SERVER_URL: url({
    default: "http://127.0.0.1:7001",
    doc: "Base URL of the job server whose assignment stream the node opens",
  }),
  GATEWAY_URL: url({
    default: "http://127.0.0.1:7002",
    doc: "Base URL of the gateway whose task stream the node opens",
  }),
  REGISTRY_URL: url({
    default: "http://127.0.0.1:7003",
    doc: "Base URL of the registry the node registers with",
  }),
} as const;

/** The compute node's parsed, frozen configuration. */
export type ComputeNodeConfig = ConfigOf<typeof computeNodeConfigSpec>;
