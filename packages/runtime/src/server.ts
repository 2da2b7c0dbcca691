import { setMaxListeners } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescFile } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { Health } from "@tessera/proto/grpc/health/v1/health_pb.js";
import { ServerReflection as ServerReflectionV1 } from "@tessera/proto/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "@tessera/proto/grpc/reflection/v1alpha/reflection_pb.js";
import type { Logger } from "pino";
import type { ConfigOf, serverConfigSpec } from "./config.js";
import { createCors } from "./cors.js";
import { createH2cHttp1Listener } from "./h2c-http1.js";
import { createHealthService, type HealthRegistry, HealthState } from "./health.js";
import { createRpcMetrics } from "./metrics.js";
import { createReflection } from "./reflection.js";
import { createRpcHandler } from "./rpc-handler.js";

/** Per-call limits every server enforces. */
export interface Limits {
  /** Largest request or response message; larger ones fail with resource_exhausted. */
  maxMessageBytes: number;
  /** Deadline of a call whose client sent none. */
  defaultDeadlineMs: number;
  /** Longer client deadlines are shortened to this. */
  maxDeadlineMs: number;
}

/** Options of {@link startServiceServer}. */
export interface ServiceServerOptions {
  /** Name of the service, e.g. "job-server" (the `server` label of the metrics). */
  service: string;
  logger: Logger;
  /** Address to listen on; default "0.0.0.0". */
  host?: string;
  /** Port; 0 picks a free one (see {@link ServiceServer.port}). */
  port: number;
  limits: Limits;
  /** Browser origins allowed to call; default "*". */
  corsOrigins?: readonly string[] | "*";
  /** Request headers browsers may send besides the protocols' own and Authorization. */
  corsAllowedHeaders?: readonly string[];
  /** How long close() lets in-flight calls finish; default 10000. */
  shutdownGraceMs?: number;
  /**
   * Generated file descriptors for reflection (e.g. file_tessera_job_v1_job_service). The files
   * of the registered services, and every import, are included anyway.
   */
  files: readonly DescFile[];
  /** Registers the service's Connect services. */
  routes: (router: ConnectRouter) => void;
  /** Extra interceptors, run inside the runtime's own (deadline, error capture). */
  interceptors?: Interceptor[];
  /**
   * Releases what the service holds (stores, loops, client sessions) once the server has drained
   * and every connection is closed: close() resolves after it. Runs once.
   */
  onClosed?: () => Promise<void> | void;
}

/** A running server. */
export interface ServiceServer {
  /** The bound port. */
  readonly port: number;
  /** Base URL for clients on this machine, e.g. "http://127.0.0.1:8080". */
  readonly url: string;
  /** Serving status per service name, answered by grpc.health.v1.Health. */
  readonly health: HealthRegistry;
  /** The grace close() gives in-flight calls (handleSignals uses it). */
  readonly shutdownGraceMs: number;
  /**
   * Drains and stops: health turns NOT_SERVING, the port closes, in-flight calls get up to
   * shutdownGraceMs to finish (then their ctx.signal aborts and they end with unavailable), and
   * every connection is closed. Resolves when all is closed; calling it again returns the same promise.
   */
  close(): Promise<void>;
}

/** After the grace, handlers get this long to react to their aborted signal before connections are cut. */
const abortFlushMs = 1000;

/** Resolves when `promise` settles or after `ms`, whichever is first, leaving no timer behind. */
async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

function localUrl(host: string, port: number): string {
  const wildcard = host === "" || host === "0.0.0.0" || host === "::";
  const name = wildcard ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  return `http://${name}:${port}`;
}

/**
 * Starts a server on one port that speaks Connect, gRPC and gRPC-Web over HTTP/2 (cleartext,
 * prior knowledge) and HTTP/1.1, with CORS for browsers. Besides the routes it serves
 * grpc.health.v1.Health ("" and every service SERVING once listening), gRPC reflection v1 and
 * v1alpha, GET /healthz (200 "ok", 503 while draining) and GET /metrics (Prometheus text).
 * Every call gets the limits in `limits` and one log line.
 */
export async function startServiceServer(opts: ServiceServerOptions): Promise<ServiceServer> {
  const { logger, limits } = opts;
  const host = opts.host ?? "0.0.0.0";
  const shutdownGraceMs = opts.shutdownGraceMs ?? 10_000;
  const health = new HealthState();
  const metrics = createRpcMetrics(opts.service);
  const shutdown = new AbortController();
  // Connect adds one abort listener per in-flight call to this signal; many calls are normal.
  setMaxListeners(0, shutdown.signal);

  const rpc = createRpcHandler({
    logger,
    metrics,
    maxMessageBytes: limits.maxMessageBytes,
    deadlines: limits,
    shutdownSignal: shutdown.signal,
    interceptors: opts.interceptors ?? [],
    routes(router) {
      opts.routes(router);
      const own = [Health, ServerReflectionV1, ServerReflectionV1alpha];
      const services = [...new Set([...router.handlers.map((h) => h.service), ...own])];
      const reflection = createReflection({ services, files: opts.files });
      router
        .service(Health, createHealthService(health))
        .service(ServerReflectionV1, reflection.v1)
        .service(ServerReflectionV1alpha, reflection.v1alpha);
    },
  });

  const cors = createCors({
    origins: opts.corsOrigins ?? "*",
    ...(opts.corsAllowedHeaders ? { allowedHeaders: opts.corsAllowedHeaders } : {}),
  });
  const listener = createH2cHttp1Listener(
    (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => {
      if (cors(req, res) || rpc.handle(req, res)) return;
      const path = (req.url ?? "").split("?", 1)[0];
      const get = req.method === "GET" || req.method === "HEAD";
      if (get && path === "/healthz") {
        const serving = !health.isShutdown;
        res.writeHead(serving ? 200 : 503, { "content-type": "text/plain" });
        res.end(serving ? "ok" : "draining");
      } else if (get && path === "/metrics") {
        metrics.render().then(
          (text) => res.writeHead(200, { "content-type": metrics.contentType }).end(text),
          (err: unknown) => {
            logger.error({ err }, "metrics failed");
            res.writeHead(500).end();
          },
        );
      } else {
        res.writeHead(404).end();
      }
    },
  );

  const address = await listener.listen(opts.port, host);
  for (const service of ["", ...rpc.services.map((s) => s.typeName)]) {
    health.setStatus(service, "SERVING");
  }

  let closing: Promise<void> | undefined;
  const drainAndClose = async () => {
    logger.info({ graceMs: shutdownGraceMs }, "draining");
    health.shutdown();
    listener.drain();
    await waitAtMost(listener.idle(), shutdownGraceMs);
    shutdown.abort(new ConnectError("server is shutting down", Code.Unavailable));
    await waitAtMost(listener.idle(), abortFlushMs);
    listener.destroy();
    await listener.closed;
    await opts.onClosed?.();
    logger.info("closed");
  };

  return {
    port: address.port,
    url: localUrl(host, address.port),
    health,
    shutdownGraceMs,
    close() {
      closing ??= drainAndClose();
      return closing;
    },
  };
}

/** The server options found in a config parsed with {@link serverConfigSpec}. */
export function serverOptionsFromConfig(config: Readonly<ConfigOf<typeof serverConfigSpec>>): {
  host: string;
  port: number;
  limits: Limits;
  corsOrigins: readonly string[] | "*";
  shutdownGraceMs: number;
} {
  const origins = config.CORS_ORIGINS.split(",")
    .map((o) => o.trim())
    .filter((o) => o !== "");
  return {
    host: config.HOST,
    port: config.PORT,
    limits: {
      maxMessageBytes: config.MAX_MESSAGE_BYTES,
      defaultDeadlineMs: config.DEFAULT_DEADLINE_MS,
      maxDeadlineMs: config.MAX_DEADLINE_MS,
    },
    corsOrigins: origins.includes("*") ? "*" : origins,
    shutdownGraceMs: config.SHUTDOWN_GRACE_MS,
  };
}
