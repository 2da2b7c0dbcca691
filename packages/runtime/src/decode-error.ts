import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Turns "the request body did not decode" into invalid_argument; other errors stay as they are.
 *
 * Connect-ES (2.1.2, still in 2.2.0) answers a request whose protobuf body fails to decode with
 * `internal`: `createBinarySerialization().parse` in
 * node_modules/@connectrpc/connect/dist/esm/protocol/serialization.js wraps every `fromBinary`
 * failure as `new ConnectError("parse binary: ...", Code.Internal)`, although the fault is the
 * caller's (the JSON codec beside it already says invalid_argument, as connect-go does for both).
 * Connect has no option for that code, and an interceptor cannot catch it: a unary request is
 * decoded before interceptors run. So the runtime corrects the status on its way out
 * (see observeOutcome in rpc-outcome.ts), recognising the error by Connect's message prefix; a
 * response-encoding failure ("serialize binary: ...") stays internal, as it is the server's fault.
 */
export function correctDecodeError(error: ConnectError): ConnectError | undefined {
  if (error.code !== Code.Internal || !error.rawMessage.startsWith("parse binary: ")) {
    return undefined;
  }
  return new ConnectError(error.rawMessage, Code.InvalidArgument, error.metadata);
}
