import { createLogger, handleSignals, loadConfigOrExit } from "@tessera/runtime";
import { gatewayConfigSpec } from "./config.js";
import { startGatewayServer } from "./server.js";

const config = loadConfigOrExit(gatewayConfigSpec);
const logger = createLogger({
  service: "gateway",
  level: config.LOG_LEVEL,
  format: config.LOG_FORMAT,
});
const server = await startGatewayServer(config, logger);
handleSignals(server, logger);
logger.info({ url: server.url }, "gateway listening");
