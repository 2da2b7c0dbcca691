import { createLogger, handleSignals, loadConfigOrExit } from "@tessera/runtime";
import { walletConfigSpec } from "./config.js";
import { startWalletServer } from "./server.js";

const config = loadConfigOrExit(walletConfigSpec);
const logger = createLogger({
  service: "wallet",
  level: config.LOG_LEVEL,
  format: config.LOG_FORMAT,
});
const server = await startWalletServer(config, logger);
handleSignals(server, logger);
logger.info({ url: server.url }, "wallet listening");
