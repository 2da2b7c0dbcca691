/**
 * Which RPCs must be signed. The rule is the proto: a method marked
 * `option idempotency_level = NO_SIDE_EFFECTS;` is a read and may be called unsigned; every
 * other method changes state and must be signed.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";

/**
 * The gRPC infrastructure services every @tessera/runtime server registers next to its own:
 * health and reflection. They are read-only, but their protos are gRPC's standard ones, which do
 * not carry the NO_SIDE_EFFECTS marking; load balancers, probes and `buf curl` call them unsigned.
 */
export const openInfrastructureServices: ReadonlySet<string> = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/**
 * The default rule: a signature is required unless the method is marked NO_SIDE_EFFECTS or
 * belongs to one of the {@link openInfrastructureServices}.
 */
export function requiresSignatureByDefault(method: DescMethod): boolean {
  if (method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS) return false;
  return !openInfrastructureServices.has(method.parent.typeName);
}
