import { createLogger, handleSignals, loadConfigOrExit } from "@tessera/runtime";
import { jobServerConfigSpec } from "./config.js";
import { JobServerSetupError, startJobServerServer } from "./server.js";

const config = loadConfigOrExit(jobServerConfigSpec);
const logger = createLogger({
  service: "job-server",
  level: config.LOG_LEVEL,
  format: config.LOG_FORMAT,
});
try {
  const server = await startJobServerServer(config, logger);
  handleSignals(server, logger);
  logger.info({ url: server.url }, "job-server listening");
} catch (error) {
  if (!(error instanceof JobServerSetupError)) throw error;
  // Same contract as loadConfigOrExit: one line naming the problem, exit 78 (EX_CONFIG).
  process.stderr.write(`${error.message}\n`);
  process.exit(78);
}
