/**
 * Whether tasks in this gateway's subnet are paid for, as the registry says (GetSubnet .free),
 * remembered for a while. Without a registry nothing can be approved or validated, so the subnet
 * is treated as free.
 */
import type { RegistryPort } from "@tessera/sdk/peer-clients";
import { GatewayError } from "../errors.js";
import { fromPeerError } from "./peer-failure.js";

/** See the module comment. */
export interface SubnetPayment {
  /** Whether tasks must be paid for. @throws GatewayError unavailable / failed_precondition */
  required(): Promise<boolean>;
  /** The last known answer without asking, or undefined. */
  cached(): boolean | undefined;
}

/** Options of {@link createSubnetPayment}. */
export interface SubnetPaymentOptions {
  readonly registry: RegistryPort | undefined;
  readonly subnetId: bigint;
  readonly cacheMs: number;
  readonly now: () => number;
}

/** See the module comment. */
export function createSubnetPayment(options: SubnetPaymentOptions): SubnetPayment {
  let known: { paid: boolean; atMs: number } | undefined;
  return {
    async required() {
      const registry = options.registry;
      if (registry === undefined) return false;
      const nowMs = options.now();
      if (known !== undefined && nowMs - known.atMs < options.cacheMs) return known.paid;
      let subnet: Awaited<ReturnType<RegistryPort["getSubnet"]>>;
      try {
        subnet = await registry.getSubnet(options.subnetId);
      } catch (error) {
        throw fromPeerError(error);
      }
      if (subnet === undefined) {
        throw new GatewayError(
          "failed_precondition",
          `the registry does not know subnet ${options.subnetId}, which this gateway serves`,
        );
      }
      known = { paid: !subnet.free, atMs: nowMs };
      return known.paid;
    },
    cached: () => (options.registry === undefined ? false : known?.paid),
  };
}
