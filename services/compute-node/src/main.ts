import { createLogger, handleSignals, loadConfigOrExit } from "@tessera/runtime";
import { computeNodeConfigSpec } from "./config.js";
import { startComputeNode } from "./server.js";

const config = loadConfigOrExit(computeNodeConfigSpec);
const logger = createLogger({
  service: "compute-node",
  level: config.LOG_LEVEL,
  format: config.LOG_FORMAT,
});
const node = await startComputeNode(config, logger);
handleSignals(node, logger);
logger.info({ url: node.url, address: node.address }, "compute-node listening");
