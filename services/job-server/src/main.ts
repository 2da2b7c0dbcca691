import { createLogger, handleSignals, loadConfigOrExit } from "@tessera/runtime";
import { jobServerConfigSpec } from "./config.js";
import { startJobServerServer } from "./server.js";

const config = loadConfigOrExit(jobServerConfigSpec);
const logger = createLogger({
  service: "job-server",
  level: config.LOG_LEVEL,
  format: config.LOG_FORMAT,
});
const server = await startJobServerServer(config, logger);
handleSignals(server, logger);
logger.info({ url: server.url }, "job-server listening");
