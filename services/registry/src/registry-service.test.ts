import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
} from "@connectrpc/connect";
import { createSigningInterceptor, createVerifyingInterceptor } from "@tessera/auth";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { solveNodeRecordPow } from "@tessera/identity/node-record";
import { createNonceSource } from "@tessera/identity/nonce";
import {
  ModelDescriptorSchema,
  NodeLoadSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  NodeEventKind,
  RegistryService,
  SubnetStatus,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { createNonceStore } from "@tessera/store";
import { describeOnSqlite, type StoreBackend } from "@tessera/store/testing";
import { createDirectory, type Directory } from "./directory/directory.js";
import { DirectoryError } from "./directory/errors.js";
import {
  createFakeClock,
  createMemoryWallet,
  type FakeClock,
  type MemoryWallet,
  newNode,
  openRegistryStore,
  sealedRecord,
  TEST_POW_DIFFICULTY,
} from "./directory/test-fixtures.js";
import { createRegistryService, toConnectError } from "./registry-service.js";
import { createSubnets } from "./subnets/subnets.js";

const V1 = { major: 1, minor: 0, patch: 0 };

/** Asserts that `promise` fails with `code` and a message matching `message`. */
async function rejectsWithCode(promise: Promise<unknown>, code: Code, message?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, code, `${Code[error.code]}: ${error.rawMessage}`);
    if (message !== undefined) assert.match(error.rawMessage, message);
    return true;
  });
}

async function drain<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) items.push(item);
  return items;
}

describeOnSqlite("RegistryService over signed in-memory calls", (backend: StoreBackend) => {
  const registryKey = generateKeyPair();
  const reporterKey = generateKeyPair();
  const treasury = generateKeyPair().address;
  // One nonce source for every signer: all run in this process on one wall clock.
  const nonces = createNonceSource();
  let clock: FakeClock;
  let directory: Directory;
  let wallet: MemoryWallet;
  let clientFor: (keyPair?: KeyPair) => Client<typeof RegistryService>;
  let space = 0;

  beforeEach(async () => {
    clock = createFakeClock();
    space += 1;
    const store = await openRegistryStore(backend, `r${space}`);
    wallet = createMemoryWallet();
    directory = createDirectory({
      store,
      clock: clock.now,
      powDifficulty: TEST_POW_DIFFICULTY,
      heartbeatIntervalMs: 10_000,
      strikesPerBan: 1,
      trustedReporters: [reporterKey.address],
      validatorStakes: {
        ledger: wallet,
        arbiterAddress: registryKey.address,
        slashBeneficiary: treasury,
      },
    });
    const subnets = createSubnets({
      store,
      clock: clock.now,
      feeAddress: treasury,
      payments: wallet,
    });
    const service = createRegistryService({ directory, subnets, requiredSignatures: 2 });
    const verifier = createVerifyingInterceptor({
      selfAddress: registryKey.address,
      nonceStore: createNonceStore(store),
      authorizeCaller: (caller) => directory.callerStanding(caller),
    });
    clientFor = (keyPair) =>
      createClient(
        RegistryService,
        createRouterTransport((router) => router.service(RegistryService, service), {
          router: { interceptors: [verifier] },
          transport: {
            interceptors:
              keyPair === undefined
                ? []
                : [
                    createSigningInterceptor({
                      keyPair,
                      target: registryKey.address,
                      nonceSource: nonces,
                    }),
                  ],
          },
        }),
      );
  });

  test("a node registers, heartbeats, is discovered, and anyone reads its entry", async () => {
    const { keyPair, record } = await newNode({ name: "worker" });
    const node = clientFor(keyPair);
    const registered = await node.registerNode({ protocolVersion: V1, record });
    assert.equal(registered.node?.record?.address, keyPair.address);
    assert.equal(registered.heartbeatIntervalMs, 10_000);
    assert.equal(registered.node?.standing?.online, false);

    const beat = await node.updateNodeHeartbeat({
      protocolVersion: V1,
      nodeAddress: keyPair.address,
      load: create(NodeLoadSchema, { freeSlots: 2 }),
    });
    assert.equal(beat.standing?.online, true);

    const scheduler = clientFor(generateKeyPair());
    const found = await drain(
      scheduler.discoverNodes({ protocolVersion: V1, onlineOnly: true, runtime: "onnxruntime" }),
    );
    assert.deepEqual(
      found.map((response) => response.node?.record?.name),
      ["worker"],
    );
    assert.deepEqual(
      await drain(scheduler.discoverNodes({ protocolVersion: V1, runtime: "tfjs" })),
      [],
    );

    const anonymous = clientFor();
    const read = await anonymous.getNode({ protocolVersion: V1, nodeAddress: keyPair.address });
    assert.equal(read.node?.load?.freeSlots, 2);
    await rejectsWithCode(
      anonymous.getNode({ protocolVersion: V1, nodeAddress: generateKeyPair().address }),
      Code.NotFound,
      /not registered/,
    );
  });

  test("state-changing calls must be signed", async () => {
    const { keyPair, record } = await newNode();
    const anonymous = clientFor();
    await rejectsWithCode(
      anonymous.registerNode({ protocolVersion: V1, record }),
      Code.Unauthenticated,
    );
    await rejectsWithCode(
      anonymous.reportNodeEvent({
        protocolVersion: V1,
        eventId: "e",
        nodeAddress: keyPair.address,
        kind: NodeEventKind.VALIDATION_FAILED,
      }),
      Code.Unauthenticated,
    );
    assert.equal(await directory.getEntry(keyPair.address), undefined);
  });

  test("bad records and bad requests get the contract's codes", async () => {
    const keyPair = generateKeyPair();
    const node = clientFor(keyPair);
    const v2 = await sealedRecord(keyPair, { sequence: 2n });

    await rejectsWithCode(
      clientFor(generateKeyPair()).registerNode({ protocolVersion: V1, record: v2 }),
      Code.PermissionDenied,
      /not the record's address/,
    );
    await rejectsWithCode(
      node.registerNode({ protocolVersion: V1, record: await sealedRecord(keyPair, {}, 2) }),
      Code.InvalidArgument,
      /proof of work difficulty 2 is below the required 8/,
    );
    const resolved = await solveNodeRecordPow({ ...v2, name: "changed" }, TEST_POW_DIFFICULTY);
    await rejectsWithCode(
      node.registerNode({ protocolVersion: V1, record: { ...resolved, signature: v2.signature } }),
      Code.Unauthenticated,
      /signature does not verify/,
    );
    await rejectsWithCode(
      node.registerNode({ protocolVersion: { major: 2, minor: 1, patch: 0 }, record: v2 }),
      Code.FailedPrecondition,
      /2\.1\.0 is not compatible with this registry's 1\.0\.0/,
    );
    await rejectsWithCode(
      node.registerNode({ record: v2 }),
      Code.InvalidArgument,
      /protocol_version/,
    );
    await rejectsWithCode(
      node.registerNode({ protocolVersion: V1 }),
      Code.InvalidArgument,
      /record/,
    );

    await node.registerNode({ protocolVersion: V1, record: v2 });
    await rejectsWithCode(
      node.registerNode({
        protocolVersion: V1,
        record: await sealedRecord(keyPair, { sequence: 1n }),
      }),
      Code.FailedPrecondition,
      /older/,
    );
    await rejectsWithCode(
      node.registerNode({
        protocolVersion: V1,
        record: await sealedRecord(keyPair, { sequence: 2n, name: "fork" }),
      }),
      Code.AlreadyExists,
    );
    await rejectsWithCode(
      drain(clientFor(generateKeyPair()).discoverNodes({ protocolVersion: V1, minReputation: 2 })),
      Code.InvalidArgument,
      /min_reputation/,
    );
  });

  test("only the node deregisters itself; only known reporters report; a banned node is refused", async () => {
    const { keyPair, record } = await newNode();
    const node = clientFor(keyPair);
    await node.registerNode({ protocolVersion: V1, record });
    const stranger = clientFor(generateKeyPair());

    await rejectsWithCode(
      stranger.deregisterNode({ protocolVersion: V1, nodeAddress: keyPair.address }),
      Code.PermissionDenied,
      /only the node itself/,
    );
    await rejectsWithCode(
      stranger.reportNodeEvent({
        protocolVersion: V1,
        eventId: "e1",
        nodeAddress: keyPair.address,
        kind: NodeEventKind.JOB_ABANDONED,
      }),
      Code.PermissionDenied,
      /may not report/,
    );
    const reported = await clientFor(reporterKey).reportNodeEvent({
      protocolVersion: V1,
      eventId: "e1",
      nodeAddress: keyPair.address,
      kind: NodeEventKind.JOB_ABANDONED,
      requestId: "job-1",
    });
    assert.equal(reported.standing?.strikes, 1);
    assert.ok(reported.standing?.bannedUntil, "one strike bans here");

    // The verifier asks the directory before any signature work: a banned caller stops there.
    await rejectsWithCode(
      node.updateNodeHeartbeat({ protocolVersion: V1, nodeAddress: keyPair.address }),
      Code.PermissionDenied,
      /blacklisted/,
    );
    // Even past the verifier, the directory refuses the banned node's record.
    await assert.rejects(
      directory.registerNode(await sealedRecord(keyPair, { sequence: 9n }), keyPair.address),
      (error: unknown) => toConnectError(error).code === Code.PermissionDenied,
    );

    clock.advance(24 * 3_600_000);
    const left = await node.deregisterNode({
      protocolVersion: V1,
      nodeAddress: keyPair.address,
      reason: "done",
    });
    assert.ok(left.deregisteredAt);
    await rejectsWithCode(
      clientFor().getNode({ protocolVersion: V1, nodeAddress: keyPair.address }),
      Code.NotFound,
    );
  });

  test("a gateway quotes, creates, reads and lists a subnet", async () => {
    const gatewayKey = generateKeyPair();
    const gateway = clientFor(gatewayKey);
    const models = [create(ModelDescriptorSchema, { modelId: "bert", source: "onnx" })];
    const { quote } = await gateway.estimateSubnetFee({
      protocolVersion: V1,
      gatewayAddress: gatewayKey.address,
      models,
    });
    assert.ok(quote);
    assert.equal(quote.feeAddress, treasury);
    const request = {
      protocolVersion: V1,
      gatewayAddress: gatewayKey.address,
      models,
      feeQuoteId: quote.quoteId,
      paymentTransferId: "transfer-1",
      configHash: new Uint8Array(32).fill(1),
      name: "text",
    };
    await rejectsWithCode(gateway.createSubnet(request), Code.FailedPrecondition, /no transfer/);
    wallet.pay({
      transferId: "transfer-1",
      fromAddress: gatewayKey.address,
      toAddress: treasury,
      amount: BigInt(quote.networkFee),
      referenceId: quote.quoteId,
    });
    const { subnet } = await gateway.createSubnet({
      protocolVersion: V1,
      gatewayAddress: gatewayKey.address,
      models,
      feeQuoteId: quote.quoteId,
      paymentTransferId: "transfer-1",
      configHash: new Uint8Array(32).fill(1),
      name: "text",
    });
    assert.equal(subnet?.status, SubnetStatus.PENDING);
    assert.equal(subnet?.networkFee, quote.networkFee);

    const reader = clientFor();
    const read = await reader.getSubnet({ protocolVersion: V1, subnetId: subnet?.subnetId ?? 0n });
    assert.equal(read.subnet?.name, "text");
    await rejectsWithCode(reader.getSubnet({ protocolVersion: V1, subnetId: 99n }), Code.NotFound);
    const listed = await reader.listSubnets({ protocolVersion: V1, modelId: "bert" });
    assert.deepEqual(
      listed.subnets.map((s) => s.subnetId),
      [subnet?.subnetId],
    );
    await rejectsWithCode(
      gateway.createSubnet({
        protocolVersion: V1,
        gatewayAddress: gatewayKey.address,
        models,
        feeQuoteId: quote.quoteId,
        paymentTransferId: "transfer-1",
        configHash: new Uint8Array(32).fill(2),
        name: "text",
      }),
      Code.AlreadyExists,
    );
  });

  test("validators register with a stake, are listed with the quorum, and unregister themselves", async () => {
    const validatorKey = generateKeyPair();
    const validator = clientFor(validatorKey);
    const record = await sealedRecord(validatorKey, {
      nodeType: NodeType.VALIDATOR,
      endpoint: { url: "http://validator-1:7003" },
    });
    const registration = {
      protocolVersion: V1,
      record,
      stakeAmount: "5000",
      stakeId: "stake-1",
    };
    await rejectsWithCode(
      validator.registerValidator(registration),
      Code.FailedPrecondition,
      /does not exist in the wallet/,
    );
    wallet.lock({
      stakeId: "stake-1",
      staker: validatorKey.address,
      amount: 5000n,
      arbiter: registryKey.address,
    });
    const registered = await validator.registerValidator(registration);
    assert.equal(registered.validator?.status, ValidatorStatus.ACTIVE);
    await rejectsWithCode(
      validator.registerValidator({
        protocolVersion: V1,
        record,
        stakeAmount: "-5",
        stakeId: "stake-1",
      }),
      Code.InvalidArgument,
      /decimal/,
    );

    const reader = clientFor();
    const info = await reader.getValidatorInfo({
      protocolVersion: V1,
      validatorAddress: validatorKey.address,
    });
    assert.equal(info.validator?.stakeAmount, "5000");
    assert.deepEqual(info.validator?.publicKey, validatorKey.publicKey);
    const list = await reader.listValidators({ protocolVersion: V1 });
    assert.equal(list.requiredSignatures, 2);
    assert.deepEqual(
      list.validators.map((v) => v.address),
      [validatorKey.address],
    );

    await rejectsWithCode(
      clientFor(generateKeyPair()).unregisterValidator({
        protocolVersion: V1,
        validatorAddress: validatorKey.address,
      }),
      Code.PermissionDenied,
    );
    const gone = await validator.unregisterValidator({
      protocolVersion: V1,
      validatorAddress: validatorKey.address,
      reason: "maintenance",
    });
    assert.equal(gone.validator?.status, ValidatorStatus.INACTIVE);
    assert.equal(gone.validator?.stakeAmount, "0");
    assert.equal(wallet.stake("stake-1")?.state, "unlocked", "the registry unlocked the stake");
    const active = await reader.listValidators({
      protocolVersion: V1,
      status: ValidatorStatus.ACTIVE,
    });
    assert.deepEqual(active.validators, []);
    await rejectsWithCode(
      reader.getValidatorInfo({ protocolVersion: V1, validatorAddress: generateKeyPair().address }),
      Code.NotFound,
    );
  });
});

test("toConnectError maps domain errors by kind and hides everything else as internal", () => {
  const banned = toConnectError(new DirectoryError("banned", "node x is banned until y"));
  assert.equal(banned.code, Code.PermissionDenied);
  assert.equal(banned.rawMessage, "node x is banned until y");
  assert.equal(toConnectError(new DirectoryError("stale", "older")).code, Code.FailedPrecondition);
  assert.equal(toConnectError(new DirectoryError("conflict", "dup")).code, Code.AlreadyExists);
  assert.equal(toConnectError(new DirectoryError("bad_signature", "s")).code, Code.Unauthenticated);
  assert.equal(toConnectError(new DirectoryError("unavailable", "wallet")).code, Code.Unavailable);
  const bug = new Error("SELECT * FROM secrets failed");
  const internal = toConnectError(bug);
  assert.equal(internal.code, Code.Internal);
  assert.equal(internal.rawMessage, "internal error", "the cause's message never reaches clients");
  assert.equal(internal.cause, bug);
  const passthrough = new ConnectError("x", Code.Unavailable);
  assert.equal(toConnectError(passthrough), passthrough);
});
