import type { Logger } from "pino";
import type { ServiceServer } from "./server.js";

/** Beyond the server's own grace, how long close() may take before the process gives up. */
const forceExitMarginMs = 5000;

/**
 * On SIGTERM or SIGINT: logs, closes `server` (draining in-flight calls) and exits 0.
 * A second signal, a failing close(), or close() outlasting the grace by 5 s exits 1 at once.
 * Call it once, from main.ts.
 */
export function handleSignals(server: ServiceServer, logger: Logger): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal, exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    const force = setTimeout(() => {
      logger.error("shutdown took too long, exiting");
      process.exit(1);
    }, server.shutdownGraceMs + forceExitMarginMs);
    force.unref();
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
