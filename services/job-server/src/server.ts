import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { ArtifactService } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { JobService } from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { JobStatusService } from "@tessera/proto/tessera/job/v1/job_status_service_pb.js";
import { NodeService } from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import {
  type Logger,
  type ServiceServer,
  serverOptionsFromConfig,
  startServiceServer,
} from "@tessera/runtime";
import type { JobServerConfig } from "./config.js";

/** The Tessera RPC services the central job server answers. */
export const jobServerServices: readonly DescService[] = [
  JobService,
  NodeService,
  JobStatusService,
  ArtifactService,
];

/**
 * Registers the central job server's services. Their behaviour lands with issue #5 (batch jobs); until then each
 * is registered without methods, so every RPC answers `unimplemented` instead of pretending.
 */
function registerJobServerRoutes(router: ConnectRouter): void {
  for (const service of jobServerServices) router.service(service, {});
}

/** Starts the central job server on the configured port; resolves once it is listening. */
export function startJobServerServer(
  config: JobServerConfig,
  logger: Logger,
): Promise<ServiceServer> {
  return startServiceServer({
    service: "job-server",
    logger,
    ...serverOptionsFromConfig(config),
    files: jobServerServices.map((service) => service.file),
    routes: registerJobServerRoutes,
  });
}
