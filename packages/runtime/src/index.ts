export {
  bool,
  ConfigError,
  type ConfigOf,
  type ConfigSpec,
  describeConfig,
  int,
  list,
  loadConfigOrExit,
  oneOf,
  parseConfig,
  port,
  serverConfigSpec,
  str,
  url,
  type VarSpec,
} from "./config.js";
export type { HealthRegistry, ServingStatus } from "./health.js";
export { createLogger, type Logger, type LoggerOptions } from "./logger.js";
export type { ArrivalHook } from "./rpc-handler.js";
export {
  type Limits,
  type ServiceServer,
  type ServiceServerOptions,
  serverOptionsFromConfig,
  startServiceServer,
} from "./server.js";
export { handleSignals } from "./shutdown.js";
