/**
 * The registry role's ValidationService against real validator processes: a registry server and
 * three validator servers on port 0, each with its own key, store and signed-request verifier;
 * the validators read the registry through its RegistryService.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor, createVerifyingInterceptor } from "@tessera/auth";
import { sha256 } from "@tessera/identity/hash";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import { verifyValidationBundle } from "@tessera/identity/validation-bundle";
import {
  NodeRecordSchema,
  NodeType,
  PreprocessingValidationSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { ValidationService } from "@tessera/proto/tessera/registry/v1/validation_service_pb.js";
import { ValidatorService } from "@tessera/proto/tessera/registry/v1/validator_service_pb.js";
import { createLogger, type ServiceServer, startServiceServer } from "@tessera/runtime";
import {
  createNonceStore,
  type NonceStoreTables,
  nonceStoreMigrations,
  openStore,
  type Store,
} from "@tessera/store";
import { createDirectory, type Directory } from "./directory/directory.js";
import { registryMigrations } from "./directory/migrations.js";
import type { RegistryTables } from "./directory/tables.js";
import { createRegistryService } from "./registry-service.js";
import { subnetMigrations } from "./subnets/migrations.js";
import { createSubnets } from "./subnets/subnets.js";
import type { SubnetTables } from "./subnets/tables.js";
import {
  createApprovalStore,
  type ValidationTables,
  validationMigrations,
} from "./validation/approval-store.js";
import { createDirectorySources } from "./validation/directory-sources.js";
import { resolveValidationPolicy } from "./validation/policy.js";
import { PROTOCOL_VERSION } from "./validation/protocol-version.js";
import { computeRecord, inferenceWork, signedCompletion } from "./validation/test-fixtures.js";
import { createValidationEngine, type ValidationEngine } from "./validation/validation-engine.js";
import { createValidatorSigner } from "./validation/validator-signer.js";
import { createValidationService, createValidatorCaller } from "./validation-service.js";
import {
  authorizeTrustedRegistries,
  createRegistryReadSources,
  createValidatorService,
} from "./validator-service.js";

type RegistryDb = RegistryTables & SubnetTables & NonceStoreTables & ValidationTables;

const QUORUM = 2;
const logger = createLogger({ service: "test", level: "silent" });
const limits = { maxMessageBytes: 4 << 20, defaultDeadlineMs: 10_000, maxDeadlineMs: 30_000 };
const treasury = generateKeyPair().address;
const policy = resolveValidationPolicy({ treasuryAddress: treasury });

const registryKey = generateKeyPair();
const validatorKeys = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
const computeKey = generateKeyPair();
const gatewayKey = generateKeyPair();
const clientKey = generateKeyPair();

let dataDir: string;
let store: Store<RegistryDb>;
let directory: Directory;
let engine: ValidationEngine;
let registry: ServiceServer;
const validatorServers = new Map<string, ServiceServer>();
const closers: (() => unknown)[] = [];

function signedClient<S extends typeof ValidationService>(
  service: S,
  key: KeyPair,
  url: string,
  target: string,
) {
  const session = new Http2SessionManager(url);
  closers.push(() => session.abort());
  return createClient(
    service,
    createConnectTransport({
      baseUrl: url,
      httpVersion: "2",
      sessionManager: session,
      interceptors: [createSigningInterceptor({ keyPair: key, target })],
    }),
  );
}

async function startValidator(key: KeyPair): Promise<ServiceServer> {
  const own = await openStore<NonceStoreTables>({
    dataDir,
    fileName: `${key.address}.sqlite`,
    migrations: nonceStoreMigrations,
  });
  closers.push(() => own.close());
  const sources = createRegistryReadSources({ registryUrl: registry.url, validatorSetCacheMs: 0 });
  closers.push(() => sources.close());
  return startServiceServer({
    service: "validator",
    logger,
    host: "127.0.0.1",
    port: 0,
    limits,
    shutdownGraceMs: 100,
    files: [ValidatorService.file],
    routes: (router) =>
      router.service(
        ValidatorService,
        createValidatorService({
          signer: createValidatorSigner({ keyPair: key, sources, policy }),
          trustedRegistries: [registryKey.address],
        }),
      ),
    interceptors: [
      createVerifyingInterceptor({
        selfAddress: key.address,
        nonceStore: createNonceStore(own),
        authorizeCaller: authorizeTrustedRegistries([registryKey.address]),
      }),
    ],
  });
}

async function expectCode(promise: Promise<unknown>, code: Code): Promise<string> {
  const error = await promise.then(
    () => assert.fail(`expected ${Code[code]}`),
    (e: unknown) => ConnectError.from(e),
  );
  assert.equal(Code[error.code], Code[code], error.rawMessage);
  return error.rawMessage;
}

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "validation-service-"));
  store = await openStore<RegistryDb>({
    dataDir,
    fileName: "registry.sqlite",
    migrations: {
      ...nonceStoreMigrations,
      ...registryMigrations,
      ...subnetMigrations,
      ...validationMigrations,
    },
  });
  directory = createDirectory({ store, powDifficulty: 0, trustedReporters: [registryKey.address] });
  const subnets = createSubnets({ store, feeAddress: treasury });
  const caller = createValidatorCaller({ keyPair: registryKey, timeoutMs: 3000 });
  closers.push(() => caller.close());
  engine = createValidationEngine({
    sources: createDirectorySources({
      directory,
      subnets,
      quorum: QUORUM,
      registryAddress: registryKey.address,
    }),
    approvals: createApprovalStore(store),
    policy,
    validators: caller,
    validatorTimeoutMs: 3000,
  });
  registry = await startServiceServer({
    service: "registry",
    logger,
    host: "127.0.0.1",
    port: 0,
    limits,
    shutdownGraceMs: 100,
    files: [RegistryService.file, ValidationService.file],
    routes: (router) =>
      router
        .service(
          RegistryService,
          createRegistryService({ directory, subnets, requiredSignatures: QUORUM }),
        )
        .service(ValidationService, createValidationService({ engine })),
    interceptors: [
      createVerifyingInterceptor({
        selfAddress: registryKey.address,
        nonceStore: createNonceStore(store),
        authorizeCaller: (caller) => directory.callerStanding(caller),
      }),
    ],
  });

  for (const key of validatorKeys) {
    const server = await startValidator(key);
    validatorServers.set(key.address, server);
    const record = await sealNodeRecord(
      create(NodeRecordSchema, {
        protocolVersion: PROTOCOL_VERSION,
        nodeType: NodeType.VALIDATOR,
        name: "validator",
        endpoint: { url: server.url },
        sequence: 1n,
        issuedAt: timestampFromDate(new Date()),
      }),
      key,
      0,
    );
    await directory.registerValidator(record, 0n, "");
  }
  await directory.acceptRecord(await computeRecord(computeKey));
  await directory.heartbeat(computeKey.address, undefined);
  await directory.acceptRecord(
    await sealNodeRecord(
      create(NodeRecordSchema, {
        protocolVersion: PROTOCOL_VERSION,
        nodeType: NodeType.GATEWAY,
        name: "gateway",
        sequence: 1n,
        issuedAt: timestampFromDate(new Date()),
      }),
      gatewayKey,
      0,
    ),
  );
});

after(async () => {
  await engine?.idle();
  await registry?.close();
  await Promise.all([...validatorServers.values()].map((s) => s.close()));
  for (const close of closers.reverse()) await close();
  await store?.close();
  await rm(dataDir, { recursive: true, force: true });
});

describe("ValidationService with real validators (2 of 3)", () => {
  const gateway = () =>
    signedClient(ValidationService, gatewayKey, registry.url, registryKey.address);
  const validatorAddresses = () => validatorKeys.map((k) => k.address);
  const preprocess = (requestId: string, fields: Parameters<typeof inferenceWork>[2] = {}) =>
    gateway().requestPreprocessingValidation({
      protocolVersion: PROTOCOL_VERSION,
      work: inferenceWork(gatewayKey, clientKey, { requestId, ...fields }),
    });

  test("a gateway gets a route and price that 2 validators signed, verifiable offline", async () => {
    const { validation } = await preprocess("task-1");
    assert.ok(validation?.terms);
    assert.equal(validation.validatorSignatures.length, QUORUM);
    assert.equal(validation.terms.route?.computeNodeAddress, computeKey.address);
    assert.equal(validation.terms.paymentTree?.computeAmount, "800");
    assert.equal(validation.terms.paymentTree?.treasuryAddress, treasury);
    const verdict = verifyValidationBundle(validation, {
      validators: validatorAddresses(),
      quorum: QUORUM,
      now: new Date(),
    });
    assert.equal(verdict.valid, true);

    const tampered = create(PreprocessingValidationSchema, validation);
    if (tampered.terms?.paymentTree) tampered.terms.paymentTree.gatewayAmount = "1000";
    assert.equal(
      verifyValidationBundle(tampered, { validators: validatorAddresses(), quorum: QUORUM }).valid,
      false,
    );
  });

  test("the same request again returns the same approval; other work under its id is refused", async () => {
    const first = await preprocess("task-1");
    const again = await preprocess("task-1");
    assert.deepEqual(
      toBinary(
        PreprocessingValidationSchema,
        again.validation ?? create(PreprocessingValidationSchema),
      ),
      toBinary(
        PreprocessingValidationSchema,
        first.validation ?? create(PreprocessingValidationSchema),
      ),
    );
    await expectCode(preprocess("task-1", { maxPrice: "5000" }), Code.AlreadyExists);
  });

  test("a price above max_price and an unknown model are refused with their codes", async () => {
    assert.match(
      await expectCode(preprocess("task-cheap", { maxPrice: "10" }), Code.FailedPrecondition),
      /max_price/,
    );
    const unknownModel = gateway().requestPreprocessingValidation({
      protocolVersion: PROTOCOL_VERSION,
      work: {
        ...inferenceWork(gatewayKey, clientKey, { requestId: "task-x" }),
        modelId: "no-such-model",
      },
    });
    assert.match(
      await expectCode(unknownModel, Code.Unavailable),
      /no online compute node hosts model/,
    );
  });

  test("only the work's gateway, known to the registry, may ask", async () => {
    const stranger = generateKeyPair();
    const call = signedClient(
      ValidationService,
      stranger,
      registry.url,
      registryKey.address,
    ).requestPreprocessingValidation({
      protocolVersion: PROTOCOL_VERSION,
      work: inferenceWork(stranger, clientKey, { requestId: "task-s" }),
    });
    assert.match(
      await expectCode(call, Code.PermissionDenied),
      /not a gateway, job server or compute node/,
    );
    const impersonating = gateway().requestPreprocessingValidation({
      protocolVersion: PROTOCOL_VERSION,
      work: inferenceWork(stranger, clientKey, { requestId: "task-i" }),
    });
    assert.match(
      await expectCode(impersonating, Code.PermissionDenied),
      /gateway_address must be the signed caller/,
    );
  });

  test("a validator answers only the registries it trusts", async () => {
    const validator = validatorKeys[0];
    assert.ok(validator);
    const url = validatorServers.get(validator.address)?.url ?? "";
    const session = new Http2SessionManager(url);
    closers.push(() => session.abort());
    const stranger = createClient(
      ValidatorService,
      createConnectTransport({
        baseUrl: url,
        httpVersion: "2",
        sessionManager: session,
        interceptors: [
          createSigningInterceptor({ keyPair: gatewayKey, target: validator.address }),
        ],
      }),
    );
    const call = stranger.signPreprocessing({ protocolVersion: PROTOCOL_VERSION });
    assert.match(await expectCode(call, Code.PermissionDenied), /caller is not registered/);
  });

  test("completion: matching result approved, mismatching result rejected, node standing follows", async () => {
    const { validation: approval } = await preprocess("task-1");
    const result = new TextEncoder().encode("digit: 7");
    const completion = signedCompletion(computeKey, "task-1", sha256(result), new Date());
    const before = (await directory.getEntry(computeKey.address))?.standing?.reputation ?? 0;
    const { validation } = await gateway().requestCompletionValidation({
      protocolVersion: PROTOCOL_VERSION,
      computeCompletion: completion,
      preprocessingValidation: approval,
      evidence: { result: { case: "resultData", value: result } },
    });
    assert.equal(validation?.terms?.approved, true);
    assert.ok(
      validation &&
        verifyValidationBundle(validation, { validators: validatorAddresses(), quorum: QUORUM })
          .valid,
    );
    const afterPass = (await directory.getEntry(computeKey.address))?.standing?.reputation ?? 0;
    assert.ok(afterPass > before, `reputation ${before} -> ${afterPass}`);

    const { validation: approval2 } = await preprocess("task-2");
    const wrong = signedCompletion(computeKey, "task-2", sha256(result), new Date());
    const { validation: rejected } = await gateway().requestCompletionValidation({
      protocolVersion: PROTOCOL_VERSION,
      computeCompletion: wrong,
      preprocessingValidation: approval2,
      evidence: { result: { case: "resultData", value: new TextEncoder().encode("digit: 1") } },
    });
    assert.equal(rejected?.terms?.approved, false);
    assert.ok(
      rejected &&
        verifyValidationBundle(rejected, { validators: validatorAddresses(), quorum: QUORUM })
          .valid,
    );
    const standing = (await directory.getEntry(computeKey.address))?.standing;
    assert.ok((standing?.reputation ?? 1) < afterPass);
    assert.equal(standing?.strikes, 1);

    const forged = { ...completion, computationTimeMs: 999n };
    const call = gateway().requestCompletionValidation({
      protocolVersion: PROTOCOL_VERSION,
      computeCompletion: forged,
      preprocessingValidation: approval,
    });
    assert.match(
      await expectCode(call, Code.Unauthenticated),
      /signature over the completion does not verify/,
    );
  });

  test("with one validator down the quorum is still reached, and the down one loses reputation", async () => {
    const down = validatorKeys[2];
    assert.ok(down);
    const before = (await directory.getValidator(down.address))?.reputation ?? 0;
    await validatorServers.get(down.address)?.close();
    const { validation } = await preprocess("task-3");
    assert.ok(
      validation &&
        verifyValidationBundle(validation, { validators: validatorAddresses(), quorum: QUORUM })
          .valid,
    );
    assert.ok(!validation.validatorSignatures.some((s) => s.validatorAddress === down.address));
    await engine.idle();
    const info = await directory.getValidator(down.address);
    assert.ok((info?.reputation ?? 1) < before, `reputation ${before} -> ${info?.reputation}`);
  });

  test("below quorum the call fails with unavailable naming the missing validators", async () => {
    const down = validatorKeys[1];
    assert.ok(down);
    await validatorServers.get(down.address)?.close();
    const message = await expectCode(preprocess("task-4"), Code.Unavailable);
    assert.match(message, /^[01] of 2 required validator signatures \(3 asked\)/);
    assert.match(message, new RegExp(`${validatorKeys[2]?.address} unreachable`));
    assert.match(message, new RegExp(`${down.address} unreachable`));
    await engine.idle();
  });
});
