export { callerOf, requireCaller, verifiedCallerKey } from "./caller.js";
export { signedRequestHeaderNames, signedRequestHeaders } from "./headers.js";
export {
  openInfrastructureServices,
  requiresSignatureByDefault,
} from "./requires-signature.js";
export { createSigningInterceptor, type SigningInterceptorOptions } from "./signing-interceptor.js";
export {
  type ArrivalHook,
  type CallerStanding,
  createVerifyingInterceptor,
  type NonceHighWaterStore,
  type VerifyingInterceptor,
  type VerifyingInterceptorOptions,
} from "./verifying-interceptor.js";
