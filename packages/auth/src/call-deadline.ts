/**
 * The deadline of an incoming call, read from its timeout header (`connect-timeout-ms` for the
 * Connect protocol, `grpc-timeout` for gRPC and gRPC-Web). Server interceptors do not see Connect's
 * parsed deadline, but they see the header it was parsed from; @tessera/runtime rewrites that
 * header before Connect reads it, so behind the runtime every call carries one.
 */
import {
  headerTimeout as connectTimeoutHeader,
  parseTimeout as parseConnectTimeout,
} from "@connectrpc/connect/protocol-connect";
import {
  headerTimeout as grpcTimeoutHeader,
  parseTimeout as parseGrpcTimeout,
} from "@connectrpc/connect/protocol-grpc";

/**
 * The call's deadline in milliseconds from when it was sent, or undefined when the call has none
 * (or a malformed one, which Connect itself rejects before any interceptor runs). Only the header
 * of the call's own protocol counts, so a second header cannot widen anything.
 */
export function callDeadlineMs(header: Headers): number | undefined {
  // gRPC-Web's content types start with "application/grpc-web", also a gRPC timeout header.
  const grpc = (header.get("content-type") ?? "").startsWith("application/grpc");
  const parsed = grpc
    ? parseGrpcTimeout(header.get(grpcTimeoutHeader), Number.MAX_SAFE_INTEGER)
    : parseConnectTimeout(header.get(connectTimeoutHeader), Number.MAX_SAFE_INTEGER);
  return parsed.error ? undefined : parsed.timeoutMs;
}
