// The registry wired to a real wallet: subnet fees checked against real transfers, validator
// stakes locked, checked, unlocked. The wallet runs as its own process (its built dist/main.js,
// so `pnpm --filter @tessera/wallet build` first); the registry and validators run in this
// process, all on port 0 and SQLite.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { createNonceSource } from "@tessera/identity/nonce";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { ModelDescriptorSchema, NodeType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  RegistryService,
  SubnetStatus,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { createLogger, parseConfig, type ServiceServer } from "@tessera/runtime";
import { type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";
import { registryConfigSpec } from "./config.js";
import { sealedRecord } from "./directory/test-fixtures.js";
import { RegistrySetupError, startRegistryServer } from "./server.js";
import { PROTOCOL_VERSION } from "./validation/protocol-version.js";
import { validatorStakeId } from "./validator-stake.js";

const walletEntry = fileURLToPath(new URL("../../wallet/dist/main.js", import.meta.url));
if (!existsSync(walletEntry)) {
  throw new Error(`${walletEntry} is missing: run \`pnpm --filter @tessera/wallet build\` first`);
}
const logger = createLogger({ service: "test", level: "silent" });
const dataDir = await mkdtemp(join(tmpdir(), "registry-wallet-"));
after(() => rm(dataDir, { recursive: true, force: true }));

const POW = "4";
const MIN_STAKE = 1000n;
const FUNDS = 1_000_000_000n;
// Every signer in this process shares one clock-driven nonce source.
const nonces = createNonceSource();

/** Asserts that `promise` fails with `code` and a message matching `message`. */
async function rejectsWithCode(promise: Promise<unknown>, code: Code, message?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, code, `${Code[error.code]}: ${error.rawMessage}`);
    if (message !== undefined) assert.match(error.rawMessage, message);
    return true;
  });
}

/** A key made now in `dir/key.json`, where the process owning `dir` loads it from. */
async function keyIn(dir: string, name: string): Promise<KeyPair> {
  return (await loadOrCreateServiceKey({ path: join(dir, "key.json"), name })).keyPair;
}

describe("the registry with a real wallet", () => {
  const sessions: Http2SessionManager[] = [];
  let wallet: SpawnedService;
  let registry: ServiceServer;
  let registryKey: KeyPair;
  let walletKey: KeyPair;
  let validatorKey: KeyPair;
  const gatewayKey = generateKeyPair();
  const stakerKey = generateKeyPair();

  function signedClient<S extends typeof RegistryService | typeof WalletService>(
    service: S,
    url: string,
    keyPair: KeyPair,
    target: string,
  ): Client<S> {
    const session = new Http2SessionManager(url);
    sessions.push(session);
    return createClient(
      service,
      createGrpcTransport({
        baseUrl: url,
        sessionManager: session,
        interceptors: [createSigningInterceptor({ keyPair, target, nonceSource: nonces })],
      }),
    );
  }
  const walletOf = (keyPair: KeyPair) =>
    signedClient(WalletService, wallet.url, keyPair, walletKey.address);
  const registryOf = (keyPair: KeyPair) =>
    signedClient(RegistryService, registry.url, keyPair, registryKey.address);

  async function balance(keyPair: KeyPair) {
    const b = await walletOf(keyPair).getBalance({
      protocolVersion: PROTOCOL_VERSION,
      address: keyPair.address,
    });
    return { available: BigInt(b.available), staked: BigInt(b.staked) };
  }

  function registryEnv(role: "registry" | "validator", dir: string): Record<string, string> {
    return {
      REGISTRY_ROLE: role,
      HOST: "127.0.0.1",
      PORT: "0",
      DATA_DIR: dir,
      POW_DIFFICULTY: POW,
      GOSSIP_INTERVAL_MS: "600000",
      WALLET_URL: wallet.url,
      WALLET_ADDRESS: walletKey.address,
    };
  }

  before(async () => {
    registryKey = await keyIn(join(dataDir, "registry"), "registry");
    walletKey = await keyIn(join(dataDir, "wallet"), "wallet");
    validatorKey = await keyIn(join(dataDir, "validator"), "validator");
    const funded = [gatewayKey, stakerKey, validatorKey].map((k) => `${k.address}=${FUNDS}`);
    wallet = await spawnService({
      entry: walletEntry,
      env: {
        DATA_DIR: join(dataDir, "wallet"),
        GENESIS: funded.join(","),
        READERS: registryKey.address,
        REGISTRY_URL: "http://127.0.0.1:9",
      },
    });
    registry = await startRegistryServer(
      parseConfig(registryConfigSpec, {
        ...registryEnv("registry", join(dataDir, "registry")),
        VALIDATOR_MIN_STAKE: MIN_STAKE.toString(),
      }),
      logger,
    );
  });
  after(async () => {
    for (const session of sessions) session.abort();
    await registry?.close();
    await wallet?.stop();
  });

  test("a subnet is created only against a real transfer of the quoted fee, once", async () => {
    const gateway = registryOf(gatewayKey);
    const gatewayWallet = walletOf(gatewayKey);
    const models = [create(ModelDescriptorSchema, { modelId: "bert", source: "onnx" })];
    const quoteFor = async () => {
      const { quote } = await gateway.estimateSubnetFee({
        protocolVersion: PROTOCOL_VERSION,
        gatewayAddress: gatewayKey.address,
        models,
      });
      assert.ok(quote);
      return quote;
    };
    const quote = await quoteFor();
    assert.equal(quote.feeAddress, registryKey.address, "the treasury is the registry by default");
    const fee = BigInt(quote.networkFee);
    const pay = (transferId: string, amount: bigint, referenceId = quote.quoteId) =>
      gatewayWallet.transfer({
        protocolVersion: PROTOCOL_VERSION,
        transferId,
        fromAddress: gatewayKey.address,
        toAddress: quote.feeAddress,
        amount: amount.toString(),
        referenceId,
      });
    const createWith = (paymentTransferId: string, feeQuoteId = quote.quoteId) =>
      gateway.createSubnet({
        protocolVersion: PROTOCOL_VERSION,
        gatewayAddress: gatewayKey.address,
        models,
        feeQuoteId,
        paymentTransferId,
        configHash: new Uint8Array(32).fill(1),
        name: "text",
      });
    const subnetCount = async () =>
      (await gateway.listSubnets({ protocolVersion: PROTOCOL_VERSION })).subnets.length;

    await rejectsWithCode(createWith("fee-unpaid"), Code.FailedPrecondition, /no transfer/);
    await pay("fee-short", fee - 1n);
    await rejectsWithCode(createWith("fee-short"), Code.FailedPrecondition, /less than the quoted/);
    await pay("fee-unreferenced", fee, "");
    await rejectsWithCode(createWith("fee-unreferenced"), Code.FailedPrecondition, /reference_id/);
    assert.equal(await subnetCount(), 1, "only the default subnet: nothing was written");

    await pay("fee-paid", fee);
    const { subnet } = await createWith("fee-paid");
    assert.equal(subnet?.status, SubnetStatus.PENDING);
    assert.equal(subnet?.paymentTransferId, "fee-paid");
    assert.equal(subnet?.networkFee, fee.toString());
    assert.deepEqual((await createWith("fee-paid")).subnet, subnet, "the same request again");

    const second = await quoteFor();
    await rejectsWithCode(
      createWith("fee-paid", second.quoteId),
      Code.AlreadyExists,
      /already paid/,
    );
    assert.equal(await subnetCount(), 2, "one payment paid for one subnet");
  });

  test("validators register against a stake locked in the wallet, and unregistering returns it", async () => {
    const staker = registryOf(stakerKey);
    const record = await sealedRecord(
      stakerKey,
      { nodeType: NodeType.VALIDATOR, endpoint: { url: "http://127.0.0.1:9" } },
      Number(POW),
    );
    const registration = { protocolVersion: PROTOCOL_VERSION, record, stakeAmount: "5000" };

    await rejectsWithCode(
      staker.registerValidator({ ...registration, stakeId: "bond-1" }),
      Code.FailedPrecondition,
      /does not exist in the wallet/,
    );
    await rejectsWithCode(
      staker.registerValidator({ ...registration, stakeAmount: "0", stakeId: "" }),
      Code.InvalidArgument,
      /minimum 1000/,
    );
    const lock = (stakeId: string, amount: bigint, arbiterAddress = registryKey.address) =>
      walletOf(stakerKey).lockStake({
        protocolVersion: PROTOCOL_VERSION,
        stakeId,
        stakerAddress: stakerKey.address,
        amount: amount.toString(),
        arbiterAddress,
      });
    await lock("bond-foreign", 5000n, gatewayKey.address);
    await rejectsWithCode(
      staker.registerValidator({ ...registration, stakeId: "bond-foreign" }),
      Code.FailedPrecondition,
      /not this registry/,
    );
    await lock("bond-1", 5000n);
    const before = await balance(stakerKey);

    const { validator } = await staker.registerValidator({ ...registration, stakeId: "bond-1" });
    assert.equal(validator?.status, ValidatorStatus.ACTIVE);
    assert.deepEqual([validator?.stakeId, validator?.stakeAmount], ["bond-1", "5000"]);

    const { validator: gone } = await staker.unregisterValidator({
      protocolVersion: PROTOCOL_VERSION,
      validatorAddress: stakerKey.address,
      reason: "leaving",
    });
    assert.equal(gone?.status, ValidatorStatus.INACTIVE);
    assert.equal(gone?.stakeAmount, "0");
    const afterwards = await balance(stakerKey);
    assert.equal(afterwards.available, before.available + 5000n, "the stake came back");
    assert.equal(afterwards.staked, before.staked - 5000n);
  });

  test("a validator process locks its stake before registering, and reuses it across restarts", async () => {
    const dir = join(dataDir, "validator");
    const config = parseConfig(registryConfigSpec, {
      ...registryEnv("validator", dir),
      REGISTRY_URL: registry.url,
      TRUSTED_REGISTRIES: registryKey.address,
      TREASURY_ADDRESS: registryKey.address,
      VALIDATOR_STAKE: "2000",
    });
    const info = async () =>
      (
        await registryOf(gatewayKey).getValidatorInfo({
          protocolVersion: PROTOCOL_VERSION,
          validatorAddress: validatorKey.address,
        })
      ).validator;

    let validator = await startRegistryServer(config, logger);
    await validator.close();
    validator = await startRegistryServer(config, logger);
    const first = await info();
    assert.equal(first?.status, ValidatorStatus.ACTIVE);
    assert.deepEqual(
      [first?.stakeId, first?.stakeAmount],
      [validatorStakeId(validatorKey.address, 1), "2000"],
    );
    assert.equal((await balance(validatorKey)).staked, 2000n, "one stake across two starts");

    await registryOf(validatorKey).unregisterValidator({
      protocolVersion: PROTOCOL_VERSION,
      validatorAddress: validatorKey.address,
    });
    assert.equal((await balance(validatorKey)).staked, 0n);
    await validator.close();

    validator = await startRegistryServer(config, logger);
    try {
      const again = await info();
      assert.equal(again?.status, ValidatorStatus.ACTIVE);
      assert.equal(again?.stakeId, validatorStakeId(validatorKey.address, 2), "a fresh stake");
      assert.equal((await balance(validatorKey)).staked, 2000n);
    } finally {
      await validator.close();
    }
  });

  test("a validator without the funds for its stake does not start", async () => {
    const dir = join(dataDir, "unfunded");
    await rejectsWithCode(
      startRegistryServer(
        parseConfig(registryConfigSpec, {
          ...registryEnv("validator", dir),
          REGISTRY_URL: registry.url,
          TRUSTED_REGISTRIES: registryKey.address,
          TREASURY_ADDRESS: registryKey.address,
          VALIDATOR_STAKE: "2000",
        }),
        logger,
      ),
      Code.FailedPrecondition,
    );
  });
});

test("stakes need a wallet: without WALLET_ADDRESS a registry with a minimum stake and a staking validator refuse to start", async () => {
  const common = { HOST: "127.0.0.1", PORT: "0", POW_DIFFICULTY: POW };
  await assert.rejects(
    startRegistryServer(
      parseConfig(registryConfigSpec, {
        ...common,
        DATA_DIR: join(dataDir, "no-wallet-registry"),
        VALIDATOR_MIN_STAKE: "1000",
      }),
      logger,
    ),
    (error: unknown) => {
      assert.ok(error instanceof RegistrySetupError);
      assert.match(error.message, /VALIDATOR_MIN_STAKE: above 0 needs WALLET_ADDRESS/);
      return true;
    },
  );
  const registryAddress = generateKeyPair().address;
  await assert.rejects(
    startRegistryServer(
      parseConfig(registryConfigSpec, {
        ...common,
        REGISTRY_ROLE: "validator",
        DATA_DIR: join(dataDir, "no-wallet-validator"),
        TRUSTED_REGISTRIES: registryAddress,
        TREASURY_ADDRESS: registryAddress,
        VALIDATOR_STAKE: "12x",
      }),
      logger,
    ),
    /VALIDATOR_STAKE: must be a decimal integer/,
  );
});
