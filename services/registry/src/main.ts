import { createLogger, handleSignals, loadConfigOrExit } from "@tessera/runtime";
import { registryConfigSpec } from "./config.js";
import { RegistrySetupError, startRegistryServer } from "./server.js";

const config = loadConfigOrExit(registryConfigSpec);
const logger = createLogger({
  service: config.REGISTRY_ROLE,
  level: config.LOG_LEVEL,
  format: config.LOG_FORMAT,
});
try {
  const server = await startRegistryServer(config, logger);
  handleSignals(server, logger);
  logger.info({ url: server.url, role: config.REGISTRY_ROLE }, "registry listening");
} catch (error) {
  if (!(error instanceof RegistrySetupError)) throw error;
  // Same contract as loadConfigOrExit: one line naming the problem, exit 78 (EX_CONFIG).
  process.stderr.write(`${error.message}\n`);
  process.exit(78);
}
