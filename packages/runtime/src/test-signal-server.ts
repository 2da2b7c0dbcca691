// Test-only: a service process as main.ts would start it, for the signal test.
import { createLogger } from "./logger.js";
import { startServiceServer } from "./server.js";
import { handleSignals } from "./shutdown.js";
import { testFile, testRoutes } from "./test-service.js";

const logger = createLogger({ service: "signal-test" });
const server = await startServiceServer({
  service: "signal-test",
  logger,
  host: "127.0.0.1",
  port: 0,
  limits: { maxMessageBytes: 1024, defaultDeadlineMs: 5_000, maxDeadlineMs: 10_000 },
  shutdownGraceMs: 5_000,
  files: [testFile],
  routes: testRoutes,
});
handleSignals(server, logger);
logger.info({ url: server.url }, "listening");
