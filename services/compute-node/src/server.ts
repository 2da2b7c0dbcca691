import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { TensorService } from "@tessera/proto/tessera/compute/v1/tensor_service_pb.js";
import {
  type Logger,
  type ServiceServer,
  serverOptionsFromConfig,
  startServiceServer,
} from "@tessera/runtime";
import type { ComputeNodeConfig } from "./config.js";

/** The Tessera RPC services the compute node answers. */
export const computeNodeServices: readonly DescService[] = [TensorService];

/**
 * Registers the compute node's services. Their behaviour lands with issue #5 and #6; until then each
 * is registered without methods, so every RPC answers `unimplemented` instead of pretending.
 */
function registerComputeNodeRoutes(router: ConnectRouter): void {
  for (const service of computeNodeServices) router.service(service, {});
}

/** Starts the compute node on the configured port; resolves once it is listening. */
export function startComputeNodeServer(
  config: ComputeNodeConfig,
  logger: Logger,
): Promise<ServiceServer> {
  return startServiceServer({
    service: "compute-node",
    logger,
    ...serverOptionsFromConfig(config),
    files: computeNodeServices.map((service) => service.file),
    routes: registerComputeNodeRoutes,
  });
}
