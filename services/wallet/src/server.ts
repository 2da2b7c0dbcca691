import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { createVerifyingInterceptor } from "@tessera/auth";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import {
  type Logger,
  type ServiceServer,
  serverOptionsFromConfig,
  startServiceServer,
} from "@tessera/runtime";
import {
  createNonceStore,
  type NonceStoreTables,
  nonceStoreMigrations,
  openStore,
} from "@tessera/store";
import type { WalletConfig } from "./config.js";
import { WalletError } from "./ledger/errors.js";
import { createLedger, type GenesisAllocation } from "./ledger/ledger.js";
import { walletMigrations } from "./ledger/migrations.js";
import type { WalletTables } from "./ledger/tables.js";
import { createRegistryValidatorSet } from "./validator-set.js";
import { createWalletService } from "./wallet-service.js";

/** The Tessera RPC services the wallet answers. */
export const walletServices: readonly DescService[] = [WalletService];

/** A configuration problem found after parsing (a rule that spans variables). */
export class WalletSetupError extends Error {
  override readonly name = "WalletSetupError";
}

/** Parses GENESIS (`address=amount,...`); the ledger checks addresses and amounts. */
export function parseGenesis(items: readonly string[]): GenesisAllocation[] {
  return items.map((item) => {
    const [address, amount, ...rest] = item.split("=");
    if (!address || !amount || rest.length > 0) {
      throw new WalletSetupError(`GENESIS: expected address=amount, got ${JSON.stringify(item)}`);
    }
    return { address: address.trim(), amount: amount.trim() };
  });
}

/**
 * Starts the wallet: opens its ledger (SQLite in DATA_DIR, or PostgreSQL), applies genesis once,
 * and serves WalletService with every state-changing RPC signed. Closing the returned server
 * drains it, then the ledger and the store.
 */
export async function startWalletServer(
  config: WalletConfig,
  logger: Logger,
): Promise<ServiceServer> {
  const genesis = parseGenesis(config.GENESIS);
  const keyFile = config.KEY_FILE || join(config.DATA_DIR, "key.json");
  const { keyPair, created } = await loadOrCreateServiceKey({ path: keyFile, name: "wallet" });
  logger.info({ address: keyPair.address, keyFile, created }, "key loaded");

  const store = await openStore<WalletTables & NonceStoreTables>({
    ...(config.DATABASE_URL ? { databaseUrl: config.DATABASE_URL } : {}),
    dataDir: config.DATA_DIR,
    fileName: "wallet.sqlite",
    migrations: { ...nonceStoreMigrations, ...walletMigrations },
    logger,
  });
  const validatorSet = createRegistryValidatorSet({
    registryUrl: config.REGISTRY_URL,
    cacheMs: config.VALIDATOR_SET_CACHE_MS,
  });
  const ledger = createLedger({
    store,
    validatorSet,
    readers: config.READERS,
    ...(config.FAUCET_ENABLED
      ? {
          faucet: {
            perCallLimit: BigInt(config.FAUCET_PER_CALL_LIMIT),
            perDayLimit: BigInt(config.FAUCET_PER_DAY_LIMIT),
          },
        }
      : {}),
  });
  const release = async () => {
    await ledger.close();
    validatorSet.close();
    await store.close();
  };
  try {
    await ledger.applyGenesis(genesis).catch((error: unknown) => {
      throw error instanceof WalletError
        ? new WalletSetupError(`GENESIS: ${error.message}`)
        : error;
    });
    const server = await startServiceServer({
      service: "wallet",
      logger,
      ...serverOptionsFromConfig(config),
      files: walletServices.map((service) => service.file),
      routes: (router) => {
        router.service(WalletService, createWalletService({ ledger }));
      },
      onClosed: release,
      interceptors: [
        createVerifyingInterceptor({
          selfAddress: keyPair.address,
          nonceStore: createNonceStore(store),
        }),
      ],
    });
    logger.info({ address: keyPair.address, faucet: config.FAUCET_ENABLED }, "wallet ready");
    return server;
  } catch (error) {
    await release();
    throw error;
  }
}
