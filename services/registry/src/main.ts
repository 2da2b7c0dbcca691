import { createLogger, handleSignals, loadConfigOrExit } from "@tessera/runtime";
import { registryConfigSpec } from "./config.js";
import { startRegistryServer } from "./server.js";

const config = loadConfigOrExit(registryConfigSpec);
const logger = createLogger({
  service: "registry",
  level: config.LOG_LEVEL,
  format: config.LOG_FORMAT,
});
const server = await startRegistryServer(config, logger);
handleSignals(server, logger);
logger.info({ url: server.url, role: config.REGISTRY_ROLE }, "registry listening");
