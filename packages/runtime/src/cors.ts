import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";

/** Which browser origins may call, and which extra request headers they may send. */
export interface CorsOptions {
  /** Allowed origins ("https://app.example.org"), or "*" for any. */
  origins: readonly string[] | "*";
  /** Request headers allowed besides Connect's, gRPC-Web's and `Authorization`. */
  allowedHeaders?: readonly string[];
}

/** Preflight answers may be cached by browsers for this long. */
const maxAgeSeconds = 7200;

/**
 * Cross-origin access for browsers, with the header lists Connect publishes for its protocols
 * (`cors` from @connectrpc/connect: Connect-Protocol-Version, Connect-Timeout-Ms, X-Grpc-Web,
 * Grpc-Timeout, ... allowed; Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin exposed).
 * Returns a function that sets the CORS response headers for an allowed `Origin` and answers a
 * preflight (OPTIONS with Access-Control-Request-Method) itself: 204, or 403 for an origin that
 * is not allowed. It returns true when it answered the request.
 */
export function createCors(opts: CorsOptions) {
  const allowedHeaders = [
    ...connectCors.allowedHeaders,
    "Authorization",
    ...(opts.allowedHeaders ?? []),
  ].join(", ");
  const exposedHeaders = connectCors.exposedHeaders.join(", ");
  const allowedMethods = connectCors.allowedMethods.join(", ");
  const allowed = (origin: string) => opts.origins === "*" || opts.origins.includes(origin);

  return (
    req: IncomingMessage | Http2ServerRequest,
    res: ServerResponse | Http2ServerResponse,
  ): boolean => {
    const origin = req.headers.origin;
    const preflight =
      req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
    if (origin === undefined) return false;
    res.setHeader("Vary", "Origin");
    if (!allowed(origin)) {
      if (preflight) res.writeHead(403).end();
      return preflight;
    }
    res.setHeader("Access-Control-Allow-Origin", origin);
    if (!preflight) {
      res.setHeader("Access-Control-Expose-Headers", exposedHeaders);
      return false;
    }
    res.writeHead(204, {
      "Access-Control-Allow-Methods": allowedMethods,
      "Access-Control-Allow-Headers": allowedHeaders,
      "Access-Control-Max-Age": String(maxAgeSeconds),
    });
    res.end();
    return true;
  };
}
