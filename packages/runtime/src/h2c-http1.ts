import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2, {
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from "node:http2";
import net, { type AddressInfo, type Socket } from "node:net";

/** A request listener that works for both HTTP versions (Connect's node adapter is one). */
export type DualRequestListener = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

/** One TCP port serving cleartext HTTP/2 (prior knowledge) and HTTP/1.1 with the same listener. */
export interface H2cHttp1Listener {
  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(port: number, host: string): Promise<AddressInfo>;
  /**
   * Stops accepting connections, sends GOAWAY to every HTTP/2 session (streams in progress
   * go on) and closes HTTP/1 connections as soon as they have no request in progress.
   */
  drain(): void;
  /** Resolves once no request is in progress (at once if none is). */
  idle(): Promise<void>;
  /** Cuts every connection still open. */
  destroy(): void;
  /** Resolves when the port is closed and every connection has ended. */
  readonly closed: Promise<void>;
}

/** "PRI * HTTP/2.0": the HTTP/2 connection preface starts with a method no HTTP/1 client sends. */
const h2Preface = Buffer.from("PRI");
/** A connection that has not sent its first bytes after this long is dropped. */
const prefaceTimeoutMs = 10_000;

/**
 * Serves h2c and HTTP/1.1 on one port. Node's plaintext `http2.createServer` has no HTTP/1
 * fallback (`allowHTTP1` only works with TLS, where ALPN picks the version; on Node 20 a
 * plaintext HTTP/1 request to it fails with a parse error). So a `net.Server` accepts the
 * connection, reads its first bytes, puts them back (`unshift`) and hands the socket to an
 * HTTP/2 or an HTTP/1 server, which both call `listener`. gRPC clients (grpc-js, `buf curl
 * --http2-prior-knowledge`) speak HTTP/2 with prior knowledge; browsers use HTTP/1.1 for Connect
 * and gRPC-Web.
 */
export function createH2cHttp1Listener(listener: DualRequestListener): H2cHttp1Listener {
  const h2 = http2.createServer(listener);
  const h1 = http.createServer(listener);
  const sockets = new Set<Socket>();
  /** Connections that have not yet sent enough bytes to tell their HTTP version. */
  const undecided = new Set<Socket>();
  const sessions = new Set<Http2Session>();
  const h1Active = new Map<Socket, number>();
  let active = 0;
  let draining = false;
  let idleWaiters: (() => void)[] = [];

  const requestStarted = (res: ServerResponse | Http2ServerResponse, onEnd?: () => void) => {
    active++;
    res.once("close", () => {
      active--;
      onEnd?.();
      if (active === 0) {
        for (const wake of idleWaiters) wake();
        idleWaiters = [];
      }
    });
  };

  h2.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (draining) session.close();
  });
  h2.on("request", (req: Http2ServerRequest, res: Http2ServerResponse) => {
    requestStarted(res);
    // A response can be complete while the request is still arriving (e.g. rejected as too
    // large from its length header alone). Nobody reads the rest then, and clients may stop
    // sending without ending their side, so the stream (and a drain) would wait forever. Once
    // our side is done (trailers queued: "wantTrailers" comes after the last DATA), reset the
    // stream with NO_ERROR, which HTTP/2 defines for exactly this (RFC 9113, 8.1), as grpc-go does.
    res.stream.once("wantTrailers", () => {
      setImmediate(() => {
        if (!req.complete && !res.stream.destroyed) res.stream.destroy();
      });
    });
  });

  h1.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    h1Active.set(socket, (h1Active.get(socket) ?? 0) + 1);
    requestStarted(res, () => {
      const left = (h1Active.get(socket) ?? 1) - 1;
      h1Active.set(socket, left);
      if (draining && left === 0) socket.end();
    });
  });

  const server = net.createServer((socket) => {
    sockets.add(socket);
    undecided.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      undecided.delete(socket);
      h1Active.delete(socket);
    });
    // Once routed, the HTTP servers watch the socket; a reset before that must not crash us.
    socket.on("error", () => {});
    const onSilent = () => socket.destroy();
    socket.setTimeout(prefaceTimeoutMs, onSilent);
    // Paused-mode reads ("readable" + read()), so that once this listener is gone the socket
    // is neither flowing nor paused and the HTTP server reading it next starts it as usual.
    let head = Buffer.alloc(0);
    const onReadable = () => {
      let chunk = socket.read() as Buffer | null;
      while (chunk !== null) {
        head = Buffer.concat([head, chunk]);
        chunk = socket.read() as Buffer | null;
      }
      const n = Math.min(head.length, h2Preface.length);
      const isH2 = head.subarray(0, n).equals(h2Preface.subarray(0, n));
      if (head.length === 0 || (isH2 && head.length < h2Preface.length)) return; // can't tell yet
      socket.off("readable", onReadable);
      socket.unshift(head);
      socket.setTimeout(0);
      socket.off("timeout", onSilent);
      undecided.delete(socket);
      if (!isH2) h1Active.set(socket, 0);
      (isH2 ? h2 : h1).emit("connection", socket);
    };
    socket.on("readable", onReadable);
  });

  const closed = new Promise<void>((resolve) => server.once("close", () => resolve()));

  return {
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve(server.address() as AddressInfo);
        });
      }),
    drain() {
      if (draining) return;
      draining = true;
      server.close();
      for (const session of sessions) session.close();
      for (const socket of undecided) socket.destroy();
      for (const [socket, requests] of h1Active) if (requests === 0) socket.end();
    },
    idle: () =>
      active === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve)),
    destroy() {
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
    },
    closed,
  };
}
