import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createConnectRouter,
  createContextKey,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { applyDeadlineLimits, type DeadlineLimits, deadlineInterceptor } from "./deadline.js";
import { correctDecodeError } from "./decode-error.js";
import type { RpcMetrics } from "./metrics.js";
import { observeOutcome } from "./rpc-outcome.js";
import { detectProtocol } from "./rpc-protocol.js";

/** Options of {@link createRpcHandler}. */
export interface RpcHandlerOptions {
  logger: Logger;
  metrics: RpcMetrics;
  /** Largest request or response message (Connect's readMaxBytes / writeMaxBytes). */
  maxMessageBytes: number;
  deadlines: DeadlineLimits;
  /** Aborting it aborts every handler's `ctx.signal` (used when the shutdown grace runs out). */
  shutdownSignal: AbortSignal;
  /** Registers the services. */
  routes: (router: ConnectRouter) => void;
  /** Run inside the runtime's deadline and error-capturing interceptors. */
  interceptors: readonly Interceptor[];
}

/** Serves the RPCs registered by `routes` to Node HTTP/1.1 and HTTP/2 requests. */
export interface RpcHandler {
  /** Every service registered, in registration order. */
  readonly services: readonly DescService[];
  /** Serves the request if its path is a registered RPC and returns true; false otherwise. */
  handle(
    req: IncomingMessage | Http2ServerRequest,
    res: ServerResponse | Http2ServerResponse,
  ): boolean;
}

/** What the error-capturing interceptor saw the handler throw, for the call's log line. */
const thrownKey = createContextKey<{ error?: unknown } | undefined>(undefined);

/** Remembers what a handler (or an application interceptor) threw, with its `cause`. */
const captureThrown: Interceptor = (next) => async (req) => {
  const remember = (error: unknown) => {
    const box = req.contextValues.get(thrownKey);
    if (box) box.error = error;
    return error;
  };
  try {
    const res = await next(req);
    if (!res.stream) return res;
    const message = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* message;
        } catch (err) {
          throw remember(err);
        }
      })(),
    };
  } catch (err) {
    throw remember(err);
  }
};

/** Codes that mean the server, not the caller, is at fault: logged at error level with the cause. */
const serverFaults = new Set([Code.Internal, Code.Unknown, Code.DataLoss]);

/**
 * Connect's node adapter, made by hand from its public parts (`universalRequestFromNodeRequest`,
 * `universalResponseToNodeResponse`) so the runtime can act at the two points the stock
 * `connectNodeAdapter` hides: before Connect reads the request (deadline limits, see
 * applyDeadlineLimits) and after it produced the response (the final status, for one log line
 * and the metrics of every call, and to correct undecodable requests to invalid_argument).
 *
 * Each call is logged once, without payloads or headers: procedure, protocol, code, durationMs,
 * peer (and the thrown error for internal/unknown/data_loss).
 */
export function createRpcHandler(opts: RpcHandlerOptions): RpcHandler {
  const { logger, metrics } = opts;
  const router = createConnectRouter({
    interceptors: [deadlineInterceptor, captureThrown, ...opts.interceptors],
    readMaxBytes: opts.maxMessageBytes,
    writeMaxBytes: opts.maxMessageBytes,
    shutdownSignal: opts.shutdownSignal,
    acceptCompression: [compressionGzip, compressionBrotli],
  });
  opts.routes(router);
  const paths = new Map<string, UniversalHandler>();
  for (const handler of router.handlers) paths.set(handler.requestPath, handler);
  const services = [...new Set(router.handlers.map((h) => h.service))];

  return {
    services,
    handle(req, res) {
      const path = (req.url ?? "").split("?", 1)[0] ?? "";
      const handler = paths.get(path);
      if (!handler) return false;
      const startedAt = performance.now();
      // Read now: an HTTP/1 request is detached from its socket once the exchange ends.
      const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
      const { protocol, framing } = detectProtocol(req.method, req.headers["content-type"]);
      const thrown: { error?: unknown } = {};
      let reported = false;
      const done = (error: ConnectError | undefined) => {
        if (reported) return;
        reported = true;
        const durationMs = Math.round((performance.now() - startedAt) * 10) / 10;
        const code = error ? codeToString(error.code) : "ok";
        metrics.observe({
          service: handler.service.typeName,
          method: handler.method.name,
          code,
          durationMs,
        });
        const fault = error !== undefined && serverFaults.has(error.code);
        const line = {
          procedure: path,
          protocol,
          code,
          durationMs,
          peer,
          ...(fault ? { err: thrown.error ?? error } : {}),
        };
        if (fault) logger.error(line, "rpc failed");
        else logger.info(line, "rpc");
      };

      let uReq: ReturnType<typeof universalRequestFromNodeRequest>;
      try {
        uReq = universalRequestFromNodeRequest(
          req,
          res,
          undefined,
          createContextValues().set(thrownKey, thrown),
        );
      } catch (err) {
        // e.g. no Host header on HTTP/1.0: Connect cannot build the request URL.
        done(ConnectError.from(err, Code.InvalidArgument));
        res.writeHead(400).end();
        return true;
      }
      applyDeadlineLimits(uReq.header, protocol, opts.deadlines);
      handler(uReq)
        .then((uRes) =>
          observeOutcome(framing, uRes, { correct: correctDecodeError, onDone: done }),
        )
        .then((uRes) => universalResponseToNodeResponse(uRes, res))
        .catch((err: unknown) => {
          // Mostly the client leaving mid-response (already reported as canceled by then).
          done(ConnectError.from(err));
          if (!res.writableEnded) res.destroy();
        });
      return true;
    },
  };
}
