import { createLogger, handleSignals, loadConfigOrExit } from "@tessera/runtime";
import { computeNodeConfigSpec } from "./config.js";
import { startComputeNodeServer } from "./server.js";

const config = loadConfigOrExit(computeNodeConfigSpec);
const logger = createLogger({
  service: "compute-node",
  level: config.LOG_LEVEL,
  format: config.LOG_FORMAT,
});
const server = await startComputeNodeServer(config, logger);
handleSignals(server, logger);
logger.info({ url: server.url }, "compute-node listening");
