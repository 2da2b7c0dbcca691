import { createLogger, handleSignals, loadConfigOrExit } from "@tessera/runtime";
import { walletConfigSpec } from "./config.js";
import { startWalletServer, WalletSetupError } from "./server.js";

const config = loadConfigOrExit(walletConfigSpec);
const logger = createLogger({
  service: "wallet",
  level: config.LOG_LEVEL,
  format: config.LOG_FORMAT,
});
try {
  const server = await startWalletServer(config, logger);
  handleSignals(server, logger);
  logger.info({ url: server.url }, "wallet listening");
} catch (error) {
  if (!(error instanceof WalletSetupError)) throw error;
  // Same contract as loadConfigOrExit: one line naming the problem, exit 78 (EX_CONFIG).
  process.stderr.write(`${error.message}\n`);
  process.exit(78);
}
