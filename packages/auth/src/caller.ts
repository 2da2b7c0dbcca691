/**
 * The verified caller of a call, as the verifying interceptor leaves it for handlers.
 */
import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";

/**
 * Context value holding the address whose signature the verifying interceptor checked, or
 * undefined for a call that was not signed (an open read). The interceptor clears it before its
 * checks, so only a verified signature ever sets it.
 */
export const verifiedCallerKey = createContextKey<string | undefined>(undefined, {
  description: "tessera verified caller",
});

/** The verified caller of the call, or undefined when the call was not signed. */
export function callerOf(ctx: HandlerContext): string | undefined {
  return ctx.values.get(verifiedCallerKey);
}

/**
 * The verified caller of the call.
 * @throws ConnectError unauthenticated when the call was not signed (e.g. an open read that needs
 * to know its caller, or a server without the verifying interceptor).
 */
export function requireCaller(ctx: HandlerContext): string {
  const caller = ctx.values.get(verifiedCallerKey);
  if (caller === undefined) {
    throw new ConnectError(
      "this call must be signed: no verified caller (tessera-* request headers)",
      Code.Unauthenticated,
    );
  }
  return caller;
}
