import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ContextValues,
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
  /**
   * Run inside the runtime's deadline and error-capturing interceptors. One with an `onArrival`
   * property (see {@link ArrivalHook}) also gets each call as its HTTP request arrives.
   */
  interceptors: readonly Interceptor[];
}

/**
 * An optional property of an interceptor: called when a call's HTTP request arrives, before
 * Connect reads its body (Connect runs a unary call's interceptors only after reading the body,
 * a streaming call's at once, so only this sees calls in arrival order). It may note something in
 * the call's context values (the ones its interceptors get) and returns what to run when the call
 * has ended, or undefined. The runtime runs that release exactly once on every path: the response
 * sent, an error, an undecodable or oversize body, the client gone. @tessera/auth's verifying
 * interceptor has one (the same shape, declared there).
 */
export type ArrivalHook = (
  header: Headers,
  contextValues: ContextValues,
) => (() => void) | undefined;

/** The arrival hooks of `interceptors`, in order. */
function arrivalHooks(interceptors: readonly Interceptor[]): ArrivalHook[] {
  const hooks: ArrivalHook[] = [];
  for (const interceptor of interceptors) {
    const hook = (interceptor as Interceptor & { onArrival?: unknown }).onArrival;
    if (typeof hook === "function") hooks.push(hook as ArrivalHook);
  }
  return hooks;
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
  const onArrival = arrivalHooks(opts.interceptors);

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
      let done = (error: ConnectError | undefined) => {
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

      const contextValues = createContextValues().set(thrownKey, thrown);
      let uReq: ReturnType<typeof universalRequestFromNodeRequest>;
      try {
        uReq = universalRequestFromNodeRequest(req, res, undefined, contextValues);
      } catch (err) {
        // e.g. no Host header on HTTP/1.0: Connect cannot build the request URL.
        done(ConnectError.from(err, Code.InvalidArgument));
        res.writeHead(400).end();
        return true;
      }
      applyDeadlineLimits(uReq.header, protocol, opts.deadlines);
      if (onArrival.length > 0) {
        const release = arrive(onArrival, uReq.header, contextValues, logger);
        // 'close' comes once the response ended or the stream or connection was cut, whatever
        // Connect did with the request; `done` comes earlier, when the last byte was handed over.
        res.once("close", release);
        const report = done;
        done = (error) => {
          release();
          report(error);
        };
      }
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

/**
 * Runs the arrival hooks of one call; returns a function that runs their releases, once. A hook
 * that throws is logged and skipped.
 */
function arrive(
  hooks: readonly ArrivalHook[],
  header: Headers,
  contextValues: ContextValues,
  logger: Logger,
): () => void {
  const releases: Array<() => void> = [];
  for (const hook of hooks) {
    try {
      const release = hook(header, contextValues);
      if (release) releases.push(release);
    } catch (err) {
      logger.error({ err }, "interceptor arrival hook failed");
    }
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const release of releases) {
      try {
        release();
      } catch (err) {
        logger.error({ err }, "interceptor arrival release failed");
      }
    }
  };
}
