import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import {
  type Logger,
  type ServiceServer,
  serverOptionsFromConfig,
  startServiceServer,
} from "@tessera/runtime";
import type { WalletConfig } from "./config.js";

/** The Tessera RPC services the wallet answers. */
export const walletServices: readonly DescService[] = [WalletService];

/**
 * Registers the wallet's services. Their behaviour lands with issue #4 (wallet); until then each
 * is registered without methods, so every RPC answers `unimplemented` instead of pretending.
 */
function registerWalletRoutes(router: ConnectRouter): void {
  for (const service of walletServices) router.service(service, {});
}

/** Starts the wallet on the configured port; resolves once it is listening. */
export function startWalletServer(config: WalletConfig, logger: Logger): Promise<ServiceServer> {
  return startServiceServer({
    service: "wallet",
    logger,
    ...serverOptionsFromConfig(config),
    files: walletServices.map((service) => service.file),
    routes: registerWalletRoutes,
  });
}
