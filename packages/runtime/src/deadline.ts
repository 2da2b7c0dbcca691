import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { getAbortSignalReason } from "@connectrpc/connect/protocol";
import {
  headerTimeout as connectTimeoutHeader,
  parseTimeout as parseConnectTimeout,
} from "@connectrpc/connect/protocol-connect";
import {
  headerTimeout as grpcTimeoutHeader,
  parseTimeout as parseGrpcTimeout,
} from "@connectrpc/connect/protocol-grpc";
import type { RpcProtocol } from "./rpc-protocol.js";

/** Deadline limits of a server. */
export interface DeadlineLimits {
  /** Deadline of a call whose client sent none. */
  defaultDeadlineMs: number;
  /** Longest deadline a call gets; longer client deadlines are shortened to it. */
  maxDeadlineMs: number;
}

/**
 * Gives every call a bounded deadline by rewriting its timeout header before Connect reads it:
 * none sent → `defaultDeadlineMs`; above `maxDeadlineMs` → `maxDeadlineMs`. Connect then sets
 * the handler's `ctx.signal` (aborts with deadline_exceeded) and `ctx.timeoutMs()` from it.
 *
 * Connect's own `maxTimeoutMs` handler option is not used: it rejects a longer deadline with
 * invalid_argument instead of shortening it, and it gives calls without a deadline none at all.
 * A malformed header is left alone, so Connect answers it with invalid_argument.
 */
export function applyDeadlineLimits(
  header: Headers,
  protocol: RpcProtocol,
  limits: DeadlineLimits,
): void {
  const connect = protocol === "connect";
  const name = connect ? connectTimeoutHeader : grpcTimeoutHeader;
  const parsed = connect
    ? parseConnectTimeout(header.get(name), Number.MAX_SAFE_INTEGER)
    : parseGrpcTimeout(header.get(name), Number.MAX_SAFE_INTEGER);
  if (parsed.error) return;
  const timeoutMs = Math.min(parsed.timeoutMs ?? limits.defaultDeadlineMs, limits.maxDeadlineMs);
  if (timeoutMs === parsed.timeoutMs) return;
  header.set(name, connect ? String(timeoutMs) : grpcTimeout(timeoutMs));
}

/** gRPC timeouts have at most 8 digits; switch to seconds beyond that (about 27 hours). */
function grpcTimeout(ms: number): string {
  return ms <= 99_999_999 ? `${ms}m` : `${Math.ceil(ms / 1000)}S`;
}

/** Settles like `promise`, or rejects with the signal's reason as soon as it aborts. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  // The abandoned promise may still reject later; nobody listens to it any more.
  promise.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(ConnectError.from(getAbortSignalReason(signal)));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

async function* untilAborted<T>(iterable: AsyncIterable<T>, signal: AbortSignal) {
  const it = iterable[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = await raceAbort(it.next(), signal);
      if (next.done) return;
      yield next.value;
    }
  } finally {
    // Not awaited: a handler that ignores its signal may never get to its own `finally`.
    it.return?.().catch(() => {});
  }
}

/**
 * Ends a call when its `signal` aborts (deadline passed, client gone, server out of grace), even
 * if the handler ignores the signal: the client gets deadline_exceeded on time; the handler's late
 * result is dropped. Runs outermost, so it also bounds the application's interceptors.
 */
export const deadlineInterceptor: Interceptor = (next) => async (req) => {
  const res = await raceAbort(next(req), req.signal);
  return res.stream ? { ...res, message: untilAborted(res.message, req.signal) } : res;
};
