import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { GatewayClientService } from "@tessera/proto/tessera/gateway/v1/gateway_client_service_pb.js";
import { GatewayComputeService } from "@tessera/proto/tessera/gateway/v1/gateway_compute_service_pb.js";
import {
  type Logger,
  type ServiceServer,
  serverOptionsFromConfig,
  startServiceServer,
} from "@tessera/runtime";
import type { GatewayConfig } from "./config.js";

/** The Tessera RPC services the gateway answers. */
export const gatewayServices: readonly DescService[] = [
  GatewayClientService,
  GatewayComputeService,
];

/**
 * Registers the gateway's services. Their behaviour lands with issue #6 (inference tasks); until then each
 * is registered without methods, so every RPC answers `unimplemented` instead of pretending.
 */
function registerGatewayRoutes(router: ConnectRouter): void {
  for (const service of gatewayServices) router.service(service, {});
}

/** Starts the gateway on the configured port; resolves once it is listening. */
export function startGatewayServer(config: GatewayConfig, logger: Logger): Promise<ServiceServer> {
  return startServiceServer({
    service: "gateway",
    logger,
    ...serverOptionsFromConfig(config),
    files: gatewayServices.map((service) => service.file),
    routes: registerGatewayRoutes,
  });
}
