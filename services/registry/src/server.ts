import { join } from "node:path";
import { create, type DescService } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type ServiceImpl } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor, createVerifyingInterceptor } from "@tessera/auth";
import { isAddress } from "@tessera/identity/address";
import type { KeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { NodeRecordSchema, NodeType } from "@tessera/proto/tessera/common/v1/common_pb.js";
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
import {
  createNonceStore,
  type NonceStoreTables,
  nonceStoreMigrations,
  openStore,
} from "@tessera/store";
import type { RegistryConfig } from "./config.js";
import { createDirectory } from "./directory/directory.js";
import { registryMigrations } from "./directory/migrations.js";
import { createOfflineSweeper } from "./directory/offline-sweeper.js";
import { createStakeReleaseSweeper } from "./directory/stake-release-sweeper.js";
import type { RegistryTables } from "./directory/tables.js";
import { createGossipLoop } from "./gossip/gossip-loop.js";
import { createMetagraph } from "./gossip/metagraph.js";
import { parseRegistryPeers } from "./gossip/peers.js";
import { sealRegistryRecord } from "./gossip/self-record.js";
import { createGossipCaller, createMetagraphService } from "./metagraph-service.js";
import { createRegistryService } from "./registry-service.js";
import { subnetMigrations } from "./subnets/migrations.js";
import { createSubnets } from "./subnets/subnets.js";
import type { SubnetTables } from "./subnets/tables.js";
import {
  createApprovalStore,
  type ValidationTables,
  validationMigrations,
} from "./validation/approval-store.js";
import { createBatchReexecution } from "./validation/batch-reexecution.js";
import { createDirectorySources } from "./validation/directory-sources.js";
import { createCompletionExecutorRegistry } from "./validation/executors.js";
import { createInferenceReexecution } from "./validation/inference-reexecution.js";
import { parsePaymentSplit } from "./validation/payment-tree.js";
import { resolveValidationPolicy } from "./validation/policy.js";
import { PROTOCOL_VERSION } from "./validation/protocol-version.js";
import type { ValidationSources } from "./validation/sources.js";
import { createValidationEngine } from "./validation/validation-engine.js";
import { createValidatorSigner } from "./validation/validator-signer.js";
import { createValidationService, createValidatorCaller } from "./validation-service.js";
import {
  authorizeTrustedRegistries,
  createRegistryReadSources,
  createValidatorService,
} from "./validator-service.js";
import { lockValidatorStake } from "./validator-stake.js";
import { connectWallet, createRegistryWallet } from "./wallet-client.js";

/** The RPC services each role of the registry binary answers. */
export const registryServicesByRole: Readonly<
  Record<RegistryConfig["REGISTRY_ROLE"], readonly DescService[]>
> = {
  registry: [RegistryService, ValidationService, MetagraphService],
  validator: [ValidatorService],
};

/** A configuration problem found after parsing (a rule that spans variables or roles). */
export class RegistrySetupError extends Error {
  override readonly name = "RegistrySetupError";
}

/** How often the registry unlocks the stakes it owes validators that left. */
const STAKE_RELEASE_INTERVAL_MS = 30_000;

/** Base units from a config variable, or a problem naming it. */
function baseUnits(name: string, text: string, problems: string[]): bigint {
  if (/^[0-9]{1,78}$/.test(text)) return BigInt(text);
  problems.push(`${name}: must be a decimal integer of base units, got ${JSON.stringify(text)}`);
  return 0n;
}

/** WALLET_ADDRESS when the amounts in `needs` call for a wallet; problems otherwise. */
function walletAddressFor(
  config: RegistryConfig,
  needs: readonly [name: string, amount: bigint][],
  problems: string[],
): string | undefined {
  if (config.WALLET_ADDRESS !== "" && !isAddress(config.WALLET_ADDRESS)) {
    problems.push(`WALLET_ADDRESS: not an address: ${config.WALLET_ADDRESS}`);
    return undefined;
  }
  if (config.WALLET_ADDRESS === "") {
    for (const [name, amount] of needs) {
      if (amount > 0n)
        problems.push(`${name}: above 0 needs WALLET_ADDRESS (stakes live in the wallet)`);
    }
    return undefined;
  }
  return config.WALLET_ADDRESS;
}

/** Things to release, last added first; `run` releases them once. */
function createCleanups() {
  const pending: (() => unknown)[] = [];
  return {
    add(cleanup: () => unknown) {
      pending.push(cleanup);
    },
    async run() {
      for (const cleanup of pending.splice(0).reverse()) await cleanup();
    },
  };
}

/**
 * Health says NOT_SERVING for `services` (and the server) until `ready` resolves, so a launcher
 * or load balancer waiting for SERVING waits for the process's start-up work, not just its port.
 * Set in the same tick the server resolved, so no health check can slip in between.
 */
async function servingWhen(
  server: ServiceServer,
  services: readonly DescService[],
  ready: () => Promise<void>,
): Promise<void> {
  const names = ["", ...services.map((service) => service.typeName)];
  for (const name of names) server.health.setStatus(name, "NOT_SERVING");
  await ready();
  for (const name of names) server.health.setStatus(name, "SERVING");
}

/**
 * The completion executors of this process: the batch re-executor when the job server is
 * configured (JOB_SERVER_ADDRESS), none otherwise. Its connection closes with the server.
 */
async function completionExecutorsFor(
  config: RegistryConfig,
  keyPair: KeyPair,
  sources: Pick<ValidationSources, "getNode">,
  cleanups: ReturnType<typeof createCleanups>,
) {
  const executors = createCompletionExecutorRegistry();
  const inference = await createInferenceReexecution({
    sources,
    dataDir: config.DATA_DIR,
    modelDirs: config.MODEL_DIRS,
    modelsFile: config.MODELS_FILE,
  });
  cleanups.add(() => inference.close());
  executors.register(inference);
  if (config.JOB_SERVER_ADDRESS === "") return executors;
  if (!isAddress(config.JOB_SERVER_ADDRESS)) {
    throw new RegistrySetupError(
      `JOB_SERVER_ADDRESS: not an address: ${config.JOB_SERVER_ADDRESS}`,
    );
  }
  const reexecution = createBatchReexecution({
    jobServerUrl: config.JOB_SERVER_URL,
    jobServerAddress: config.JOB_SERVER_ADDRESS,
    keyPair,
    dataDir: config.DATA_DIR,
  });
  cleanups.add(() => reexecution.close());
  executors.register(reexecution.executor);
  return executors;
}

async function serviceKey(config: RegistryConfig, logger: Logger): Promise<KeyPair> {
  const path = config.KEY_FILE || join(config.DATA_DIR, "key.json");
  const { keyPair, created } = await loadOrCreateServiceKey({ path, name: config.REGISTRY_ROLE });
  logger.info({ address: keyPair.address, keyFile: path, created }, "key loaded");
  return keyPair;
}

function policyOf(config: RegistryConfig, treasuryAddress: string) {
  return resolveValidationPolicy({
    treasuryAddress,
    defaultSplit: parsePaymentSplit(config.PAYMENT_SPLIT_BPS),
    inferenceTaskComputeMs: config.INFERENCE_TASK_COMPUTE_MS,
    approvalTtlMs: config.APPROVAL_TTL_MS,
    maxApprovalTtlMs: config.MAX_APPROVAL_TTL_MS,
    clockSkewMs: config.CLOCK_SKEW_MS,
    minPowDifficulty: config.POW_DIFFICULTY,
  });
}

/**
 * Starts the registry binary in its configured role; resolves once it is listening (and, in the
 * validator role, registered with its registry). Closing the returned server drains it, then
 * stops the background loops and closes the store.
 */
export function startRegistryServer(
  config: RegistryConfig,
  logger: Logger,
): Promise<ServiceServer> {
  return config.REGISTRY_ROLE === "registry"
    ? startRegistryRole(config, logger)
    : startValidatorRole(config, logger);
}

async function startRegistryRole(config: RegistryConfig, logger: Logger): Promise<ServiceServer> {
  const problems: string[] = [];
  const minStake = baseUnits("VALIDATOR_MIN_STAKE", config.VALIDATOR_MIN_STAKE, problems);
  const slashAmount = baseUnits("VALIDATOR_SLASH_AMOUNT", config.VALIDATOR_SLASH_AMOUNT, problems);
  const walletAddress = walletAddressFor(
    config,
    [
      ["VALIDATOR_MIN_STAKE", minStake],
      ["VALIDATOR_SLASH_AMOUNT", slashAmount],
    ],
    problems,
  );
  if (problems.length > 0) throw new RegistrySetupError(problems.join("; "));

  const cleanups = createCleanups();
  // Once the server runs, closing it drains and then runs the cleanups (onClosed).
  let server: ServiceServer | undefined;
  try {
    const keyPair = await serviceKey(config, logger);
    const treasury = config.TREASURY_ADDRESS || keyPair.address;
    const policy = policyOf(config, treasury);
    const store = await openStore<
      NonceStoreTables & RegistryTables & SubnetTables & ValidationTables
    >({
      ...(config.DATABASE_URL ? { databaseUrl: config.DATABASE_URL } : {}),
      dataDir: config.DATA_DIR,
      fileName: "registry.sqlite",
      migrations: {
        ...nonceStoreMigrations,
        ...registryMigrations,
        ...subnetMigrations,
        ...validationMigrations,
      },
      logger,
    });
    cleanups.add(() => store.close());
    const nonceSource = createNonceSource();
    const wallet =
      walletAddress === undefined
        ? undefined
        : createRegistryWallet({
            walletUrl: config.WALLET_URL,
            walletAddress,
            keyPair,
            nonceSource,
          });
    if (wallet !== undefined) cleanups.add(() => wallet.close());
    const subnets = createSubnets({ store, feeAddress: treasury, payments: wallet });
    const approvals = createApprovalStore(store);
    const directory = createDirectory({
      store,
      powDifficulty: config.POW_DIFFICULTY,
      heartbeatIntervalMs: config.HEARTBEAT_INTERVAL_MS,
      heartbeatTimeoutMs: config.HEARTBEAT_TIMEOUT_MS,
      strikesPerBan: config.STRIKES_PER_BAN,
      minValidatorStake: minStake,
      validatorStakes:
        wallet === undefined
          ? undefined
          : {
              ledger: wallet,
              arbiterAddress: keyPair.address,
              slashBeneficiary: treasury,
              slashPerInvalidSignature: slashAmount,
              openApprovalsUntil: (validator, now) => approvals.openUntil(validator, now),
            },
      // The registry reports validation verdicts about nodes itself.
      trustedReporters: [keyPair.address, ...config.TRUSTED_REPORTERS],
      isKnownReporter: (address) => subnets.isSubnetGateway(address),
    });
    const sweeper = createOfflineSweeper({
      directory,
      intervalMs: config.HEARTBEAT_INTERVAL_MS,
      onError: (error) => logger.warn({ err: error }, "offline sweep failed"),
    });
    cleanups.add(() => sweeper.close());
    if (wallet !== undefined) {
      const releases = createStakeReleaseSweeper({
        directory,
        intervalMs: STAKE_RELEASE_INTERVAL_MS,
        onReleased: (stakeIds) => logger.info({ stakeIds }, "validator stakes returned"),
        onError: (error) => logger.warn({ err: error }, "returning validator stakes failed"),
      });
      cleanups.add(() => releases.close());
    }

    const validatorCaller = createValidatorCaller({
      keyPair,
      nonceSource,
      timeoutMs: config.VALIDATOR_TIMEOUT_MS,
    });
    cleanups.add(() => validatorCaller.close());
    const sources = createDirectorySources({
      directory,
      subnets,
      quorum: config.VALIDATOR_QUORUM,
      registryAddress: keyPair.address,
      trustedRouters: config.TRUSTED_REPORTERS,
    });
    const engine = createValidationEngine({
      sources,
      approvals,
      policy,
      validators: validatorCaller,
      validatorTimeoutMs: config.VALIDATOR_TIMEOUT_MS,
      executors: await completionExecutorsFor(config, keyPair, sources, cleanups),
      onBackgroundError: (error) =>
        logger.warn({ err: error }, "validation background task failed"),
    });
    cleanups.add(() => engine.idle());

    // The metagraph needs the URL the server ends up listening on; until it exists (a few ms
    // during start), Gossip answers unavailable.
    let metagraphService: ServiceImpl<typeof MetagraphService> | undefined;
    server = await startServiceServer({
      service: "registry",
      logger,
      ...serverOptionsFromConfig(config),
      onClosed: cleanups.run,
      files: registryServicesByRole.registry.map((service) => service.file),
      routes: (router) => {
        router.service(
          RegistryService,
          createRegistryService({
            directory,
            subnets,
            requiredSignatures: config.VALIDATOR_QUORUM,
          }),
        );
        router.service(ValidationService, createValidationService({ engine }));
        router.service(MetagraphService, {
          gossip: (request, ctx) => {
            if (metagraphService === undefined) {
              throw new ConnectError("registry is starting", Code.Unavailable);
            }
            return metagraphService.gossip(request, ctx);
          },
        });
      },
      interceptors: [
        createVerifyingInterceptor({
          selfAddress: keyPair.address,
          nonceStore: createNonceStore(store),
          clockSkewMs: config.CLOCK_SKEW_MS,
          authorizeCaller: (caller) => directory.callerStanding(caller),
        }),
      ],
    });
    const publicUrl = config.PUBLIC_URL || server.url;
    const metagraph = createMetagraph({
      directory,
      selfAddress: keyPair.address,
      selfUrl: publicUrl,
      bootstrapPeers: parseRegistryPeers(config.REGISTRY_PEERS),
    });
    metagraphService = createMetagraphService({ metagraph });
    const gossipCaller = createGossipCaller({ keyPair, nonceSource });
    cleanups.add(() => gossipCaller.close());
    const gossip = createGossipLoop({
      metagraph,
      call: gossipCaller.call,
      intervalMs: config.GOSSIP_INTERVAL_MS,
      onError: (error) => logger.warn({ err: error }, "gossip round failed"),
    });
    cleanups.add(() => gossip.close());
    await servingWhen(server, registryServicesByRole.registry, async () => {
      await directory.acceptRecord(
        await sealRegistryRecord({ keyPair, publicUrl, powDifficulty: config.POW_DIFFICULTY }),
      );
    });
    gossip.start();
    logger.info(
      { address: keyPair.address, treasury, publicUrl, wallet: walletAddress ?? null },
      "registry role ready",
    );
    return server;
  } catch (error) {
    await (server ? server.close() : cleanups.run());
    throw error;
  }
}

async function startValidatorRole(config: RegistryConfig, logger: Logger): Promise<ServiceServer> {
  const trustedRegistries = config.TRUSTED_REGISTRIES;
  const problems = [
    ...(trustedRegistries.length === 0
      ? ["TRUSTED_REGISTRIES: required in the validator role"]
      : []),
    ...trustedRegistries
      .filter((address) => !isAddress(address))
      .map((address) => `TRUSTED_REGISTRIES: not an address: ${address}`),
    ...(isAddress(config.TREASURY_ADDRESS)
      ? []
      : ["TREASURY_ADDRESS: required in the validator role (the registry's treasury address)"]),
  ];
  const stake = baseUnits("VALIDATOR_STAKE", config.VALIDATOR_STAKE, problems);
  const walletAddress = walletAddressFor(config, [["VALIDATOR_STAKE", stake]], problems);
  if (problems.length > 0) throw new RegistrySetupError(problems.join("; "));
  const registryAddress = trustedRegistries[0] as string;

  const cleanups = createCleanups();
  // Once the server runs, closing it drains and then runs the cleanups (onClosed).
  let server: ServiceServer | undefined;
  try {
    const keyPair = await serviceKey(config, logger);
    const store = await openStore<NonceStoreTables>({
      ...(config.DATABASE_URL ? { databaseUrl: config.DATABASE_URL } : {}),
      dataDir: config.DATA_DIR,
      fileName: "validator.sqlite",
      migrations: nonceStoreMigrations,
      logger,
    });
    cleanups.add(() => store.close());
    const sources = createRegistryReadSources({ registryUrl: config.REGISTRY_URL });
    cleanups.add(() => sources.close());
    const signer = createValidatorSigner({
      keyPair,
      sources,
      policy: policyOf(config, config.TREASURY_ADDRESS),
      executors: await completionExecutorsFor(config, keyPair, sources, cleanups),
    });
    server = await startServiceServer({
      service: "validator",
      logger,
      ...serverOptionsFromConfig(config),
      onClosed: cleanups.run,
      files: registryServicesByRole.validator.map((service) => service.file),
      routes: (router) => {
        router.service(ValidatorService, createValidatorService({ signer, trustedRegistries }));
      },
      interceptors: [
        createVerifyingInterceptor({
          selfAddress: keyPair.address,
          nonceStore: createNonceStore(store),
          clockSkewMs: config.CLOCK_SKEW_MS,
          authorizeCaller: authorizeTrustedRegistries(trustedRegistries),
        }),
      ],
    });
    const publicUrl = config.PUBLIC_URL || server.url;
    await servingWhen(server, registryServicesByRole.validator, () =>
      registerWithRegistry({
        config,
        keyPair,
        registryAddress,
        publicUrl,
        stake:
          walletAddress === undefined || stake === 0n
            ? undefined
            : { walletAddress, amount: stake },
        logger,
      }),
    );
    logger.info(
      { address: keyPair.address, registry: config.REGISTRY_URL },
      "validator registered",
    );
    return server;
  } catch (error) {
    await (server ? server.close() : cleanups.run());
    throw error;
  }
}

/** What {@link registerWithRegistry} needs. */
interface ValidatorRegistration {
  readonly config: RegistryConfig;
  readonly keyPair: KeyPair;
  readonly registryAddress: string;
  readonly publicUrl: string;
  /** The stake to lock in the wallet first; undefined registers without stake. */
  readonly stake: { readonly walletAddress: string; readonly amount: bigint } | undefined;
  readonly logger: Logger;
}

/** Deadline of each call a starting validator makes to its registry and wallet. */
const REGISTRATION_TIMEOUT_MS = 10_000;

/**
 * Announces this validator (a sealed VALIDATOR record and its stake) to its registry, signed.
 * With a stake, it first locks (or finds, after a restart) its stake in the wallet, naming the
 * registry as arbiter.
 */
async function registerWithRegistry(registration: ValidatorRegistration): Promise<void> {
  const { config, keyPair, registryAddress, publicUrl } = registration;
  const record = await sealNodeRecord(
    create(NodeRecordSchema, {
      protocolVersion: PROTOCOL_VERSION,
      nodeType: NodeType.VALIDATOR,
      name: `validator-${keyPair.address.slice(-8)}`,
      softwareVersion: "0.1.0",
      endpoint: { url: publicUrl },
      // A restarted validator's record must be newer than the one the registry holds.
      sequence: BigInt(Date.now()),
      issuedAt: timestampFromDate(new Date()),
    }),
    keyPair,
    config.POW_DIFFICULTY,
  );
  const nonceSource = createNonceSource();
  const session = new Http2SessionManager(config.REGISTRY_URL);
  const wallet =
    registration.stake === undefined
      ? undefined
      : connectWallet({
          walletUrl: config.WALLET_URL,
          walletAddress: registration.stake.walletAddress,
          keyPair,
          nonceSource,
          timeoutMs: REGISTRATION_TIMEOUT_MS,
        });
  try {
    const client = createClient(
      RegistryService,
      createGrpcTransport({
        baseUrl: config.REGISTRY_URL,
        sessionManager: session,
        interceptors: [createSigningInterceptor({ keyPair, target: registryAddress, nonceSource })],
      }),
    );
    const locked =
      wallet === undefined || registration.stake === undefined
        ? undefined
        : await lockValidatorStake({
            wallet: wallet.client,
            registry: client,
            validatorAddress: keyPair.address,
            registryAddress,
            amount: registration.stake.amount,
            timeoutMs: REGISTRATION_TIMEOUT_MS,
          });
    if (locked !== undefined) {
      registration.logger.info(
        { stakeId: locked.stakeId, amount: locked.amount.toString() },
        "validator stake locked in the wallet",
      );
    }
    await client.registerValidator(
      {
        protocolVersion: PROTOCOL_VERSION,
        record,
        stakeAmount: (locked?.amount ?? 0n).toString(),
        stakeId: locked?.stakeId ?? "",
      },
      { timeoutMs: REGISTRATION_TIMEOUT_MS },
    );
  } finally {
    wallet?.close();
    session.abort();
  }
}
