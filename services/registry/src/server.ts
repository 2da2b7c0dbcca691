import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { MetagraphService } from "@tessera/proto/tessera/registry/v1/metagraph_service_pb.js";
import { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { ValidationService } from "@tessera/proto/tessera/registry/v1/validation_service_pb.js";
import { ValidatorService } from "@tessera/proto/tessera/registry/v1/validator_service_pb.js";
import {
  type Logger,
  type ServiceServer,
  serverOptionsFromConfig,
  startServiceServer,
} from "@tessera/runtime";
import type { RegistryConfig } from "./config.js";

/** The RPC services each role of the registry binary answers. */
export const registryServicesByRole: Readonly<
  Record<RegistryConfig["REGISTRY_ROLE"], readonly DescService[]>
> = {
  registry: [RegistryService, ValidationService, MetagraphService],
  validator: [ValidatorService],
};

/** Starts the registry binary in its configured role; resolves once it is listening. */
export function startRegistryServer(
  config: RegistryConfig,
  logger: Logger,
): Promise<ServiceServer> {
  const services = registryServicesByRole[config.REGISTRY_ROLE];
  // Behaviour lands with issue #3 (identity and trust); until then each service is registered
  // without methods, so every RPC answers `unimplemented` instead of pretending.
  const routes = (router: ConnectRouter) => {
    for (const service of services) router.service(service, {});
  };
  return startServiceServer({
    service: "registry",
    logger,
    ...serverOptionsFromConfig(config),
    files: services.map((service) => service.file),
    routes,
  });
}
