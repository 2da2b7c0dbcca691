/** The three RPC protocols served on one port. */
export type RpcProtocol = "connect" | "grpc" | "grpc-web";

/** How a call's response carries its final status. */
export type StatusFraming =
  /** Connect unary: HTTP status plus a JSON error body. */
  | "connect-unary"
  /** Connect streaming: an end-stream envelope (flag 0x02) holding JSON. */
  | "connect-stream"
  /** gRPC: grpc-status / grpc-message HTTP trailers. */
  | "grpc-trailers"
  /** gRPC-Web: a trailer envelope (flag 0x80) holding the trailers as text. */
  | "grpc-web-trailers";

/** Which protocol and status framing a request uses, from its method and content-type. */
export function detectProtocol(
  httpMethod: string | undefined,
  contentType: string | undefined,
): { protocol: RpcProtocol; framing: StatusFraming } {
  const type = (contentType ?? "").toLowerCase();
  if (type.startsWith("application/grpc-web")) {
    return { protocol: "grpc-web", framing: "grpc-web-trailers" };
  }
  if (type.startsWith("application/grpc")) return { protocol: "grpc", framing: "grpc-trailers" };
  const streaming = httpMethod === "POST" && type.startsWith("application/connect+");
  return { protocol: "connect", framing: streaming ? "connect-stream" : "connect-unary" };
}
