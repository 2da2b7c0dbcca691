/**
 * The Forward benchmark's baseline server, run as its own process: the runtime's Connect server
 * (same limits, same HTTP/2 stack as every service) answering TensorService.Forward with the
 * request's own tensors: no signature, no token, no model. Logs its URL like a service does.
 */

import { TensorService } from "@tessera/proto/tessera/compute/v1/tensor_service_pb.js";
import { createLogger, startServiceServer } from "@tessera/runtime";

const logger = createLogger({ service: "echo", level: "info", format: "json" });
const server = await startServiceServer({
  service: "echo",
  logger,
  host: "127.0.0.1",
  port: 0,
  limits: { maxMessageBytes: 64 * 2 ** 20, defaultDeadlineMs: 30_000, maxDeadlineMs: 60_000 },
  files: [TensorService.file],
  routes: (router) =>
    router.service(TensorService, {
      forward: (request) => ({ message: request.message }),
    }),
});
logger.info({ url: server.url }, "echo listening");
process.on("SIGTERM", () => void server.close().then(() => process.exit(0)));
