/**
 * The registry role's engine on both stores, with in-process validators (their signers called
 * directly) and a fake clock: durability and idempotency of approvals, verdicts, cancellation.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { sha256 } from "@tessera/identity/hash";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import {
  CompletionValidationSchema,
  NodeRecordSchema,
  NodeType,
  PreprocessingValidationSchema,
  type ValidatorSignature,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  RequestCompletionValidationRequestSchema,
  RequestPreprocessingValidationRequestSchema,
} from "@tessera/proto/tessera/registry/v1/validation_service_pb.js";
import type { Store } from "@tessera/store";
import { nonceStoreMigrations } from "@tessera/store";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import { createDirectory, type Directory } from "../directory/directory.js";
import { registryMigrations } from "../directory/migrations.js";
import { createFakeClock, type FakeClock, type RegistryDb } from "../directory/test-fixtures.js";
import { subnetMigrations } from "../subnets/migrations.js";
import { createSubnets } from "../subnets/subnets.js";
import {
  createApprovalStore,
  type ValidationTables,
  validationMigrations,
} from "./approval-store.js";
import { createDirectorySources } from "./directory-sources.js";
import { ValidationError } from "./errors.js";
import { createCompletionExecutorRegistry } from "./executors.js";
import type { ValidatorReply } from "./fan-out.js";
import { resolveValidationPolicy } from "./policy.js";
import { PROTOCOL_VERSION } from "./protocol-version.js";
import type { RegistryValidationSources } from "./sources.js";
import { computeRecord, inferenceWork, keyPairs, signedCompletion } from "./test-fixtures.js";
import { createValidationEngine, type ValidatorCaller } from "./validation-engine.js";
import { createValidatorSigner, type ValidatorSigner } from "./validator-signer.js";

type Db = RegistryDb & ValidationTables;

const registryKey = generateKeyPair();
const validatorKeys = keyPairs(3);
const computeKey = generateKeyPair();
const gatewayKey = generateKeyPair();
const clientKey = generateKeyPair();
const policy = resolveValidationPolicy({ treasuryAddress: generateKeyPair().address });

/** In-process validators: `down` ones are unreachable, `hang` ones wait for the signal. */
function inProcessCaller(
  signers: Map<string, ValidatorSigner>,
  behaviour: { down: Set<string>; hang: Set<string>; calls: number },
): ValidatorCaller {
  const answer = async (
    address: string,
    signal: AbortSignal,
    sign: (s: ValidatorSigner) => Promise<ValidatorSignature>,
  ): Promise<ValidatorReply> => {
    behaviour.calls++;
    if (behaviour.down.has(address)) return { kind: "unreachable", reason: "connect ECONNREFUSED" };
    if (behaviour.hang.has(address)) {
      return new Promise((resolve) =>
        signal.addEventListener("abort", () => resolve({ kind: "unreachable", reason: "aborted" })),
      );
    }
    const signer = signers.get(address);
    if (signer === undefined) return { kind: "unreachable", reason: "unknown" };
    try {
      return { kind: "signed", signature: await sign(signer) };
    } catch (error) {
      if (error instanceof ValidationError) return { kind: "refused", reason: error.message };
      throw error;
    }
  };
  return {
    signPreprocessing: (v, request, signal) =>
      answer(v.address, signal, (s) => s.signPreprocessing(request)),
    signCompletion: (v, request, signal) =>
      answer(v.address, signal, (s) => s.signCompletion(request, signal)),
  };
}

interface World {
  store: Store<Db>;
  directory: Directory;
  sources: RegistryValidationSources;
  clock: FakeClock;
  behaviour: { down: Set<string>; hang: Set<string>; calls: number };
  signers: Map<string, ValidatorSigner>;
  engine: ReturnType<typeof createValidationEngine>;
  reopen(): Promise<void>;
}

/** A registry with three validators, a compute node and a gateway, in its own store `space`. */
async function world(
  backend: StoreBackend,
  space: string,
  validatorExecutors = createCompletionExecutorRegistry(),
): Promise<World> {
  const open = () =>
    backend.open<Db>({
      space,
      migrations: {
        ...nonceStoreMigrations,
        ...registryMigrations,
        ...subnetMigrations,
        ...validationMigrations,
      },
    });
  const clock = createFakeClock();
  const behaviour = { down: new Set<string>(), hang: new Set<string>(), calls: 0 };
  const signers = new Map<string, ValidatorSigner>();
  const w = { clock, behaviour, signers } as World;
  const build = async () => {
    w.store = await open();
    w.directory = createDirectory({
      store: w.store,
      powDifficulty: 0,
      clock: clock.now,
      trustedReporters: [registryKey.address],
    });
    w.sources = createDirectorySources({
      directory: w.directory,
      subnets: createSubnets({
        store: w.store,
        feeAddress: policy.treasuryAddress,
        clock: clock.now,
      }),
      quorum: 2,
      registryAddress: registryKey.address,
    });
    for (const key of validatorKeys) {
      signers.set(
        key.address,
        createValidatorSigner({
          keyPair: key,
          sources: w.sources,
          policy,
          executors: validatorExecutors,
          clock: clock.now,
        }),
      );
    }
    w.engine = createValidationEngine({
      sources: w.sources,
      approvals: createApprovalStore(w.store),
      policy,
      validators: inProcessCaller(signers, behaviour),
      validatorTimeoutMs: 1000,
      clock: clock.now,
    });
  };
  await build();
  for (const key of validatorKeys) {
    const record = await sealNodeRecord(
      create(NodeRecordSchema, {
        protocolVersion: PROTOCOL_VERSION,
        nodeType: NodeType.VALIDATOR,
        endpoint: { url: "http://127.0.0.1:1" },
        sequence: 1n,
        issuedAt: timestampFromDate(clock.now()),
      }),
      key,
      0,
    );
    await w.directory.registerValidator(record, 0n, "");
  }
  await w.directory.acceptRecord(await computeRecord(computeKey));
  await w.directory.heartbeat(computeKey.address, undefined);
  await w.directory.acceptRecord(await gatewayRecord(gatewayKey, clock.now()));
  w.reopen = async () => {
    await w.engine.idle();
    await w.store.close();
    await build();
  };
  return w;
}

function gatewayRecord(key: KeyPair, now: Date) {
  return sealNodeRecord(
    create(NodeRecordSchema, {
      protocolVersion: PROTOCOL_VERSION,
      nodeType: NodeType.GATEWAY,
      sequence: 1n,
      issuedAt: timestampFromDate(now),
    }),
    key,
    0,
  );
}

const preprocessingRequest = (requestId: string, maxPrice = "") =>
  create(RequestPreprocessingValidationRequestSchema, {
    protocolVersion: PROTOCOL_VERSION,
    work: inferenceWork(gatewayKey, clientKey, { requestId, maxPrice }),
  });

const bytesOf = (v: Parameters<typeof toBinary<typeof PreprocessingValidationSchema>>[1]) =>
  toBinary(PreprocessingValidationSchema, v);

await describeEachStore("validation engine", (backend) => {
  const signal = () => new AbortController().signal;

  test("an approval survives a restart: the same request gets it back without asking validators", async () => {
    const w = await world(backend, "engine1");
    const first = await w.engine.requestPreprocessing(
      preprocessingRequest("job-1"),
      gatewayKey.address,
      signal(),
    );
    await w.reopen();
    const callsBefore = w.behaviour.calls;
    const again = await w.engine.requestPreprocessing(
      preprocessingRequest("job-1"),
      gatewayKey.address,
      signal(),
    );
    assert.deepEqual(bytesOf(again), bytesOf(first));
    assert.equal(w.behaviour.calls, callsBefore);
    await w.engine.idle();
  });

  test("two identical requests at once get one and the same approval", async () => {
    const w = await world(backend, "engine2");
    const [a, b] = await Promise.all([
      w.engine.requestPreprocessing(preprocessingRequest("job-2"), gatewayKey.address, signal()),
      w.engine.requestPreprocessing(preprocessingRequest("job-2"), gatewayKey.address, signal()),
    ]);
    assert.deepEqual(bytesOf(a), bytesOf(b));
    await w.engine.idle();
  });

  test("once expired, a request id gets a fresh approval", async () => {
    const w = await world(backend, "engine3");
    const first = await w.engine.requestPreprocessing(
      preprocessingRequest("job-3"),
      gatewayKey.address,
      signal(),
    );
    w.clock.advance(policy.approvalTtlMs + 1);
    await w.directory.heartbeat(computeKey.address, undefined);
    const fresh = await w.engine.requestPreprocessing(
      preprocessingRequest("job-3"),
      gatewayKey.address,
      signal(),
    );
    assert.notDeepEqual(fresh.terms?.expiresAt, first.terms?.expiresAt);
    await w.engine.idle();
  });

  test("a task whose approved node went offline is re-routed: a fresh approval replaces the old one", async () => {
    const w = await world(backend, "engine_reroute");
    const spare = generateKeyPair();
    await w.directory.acceptRecord(await computeRecord(spare));
    await w.directory.heartbeat(spare.address, undefined);
    const ask = (node: string) =>
      w.engine.requestPreprocessing(
        create(RequestPreprocessingValidationRequestSchema, {
          protocolVersion: PROTOCOL_VERSION,
          work: inferenceWork(gatewayKey, clientKey, {
            requestId: "job-reroute",
            computeNodeAddress: node,
          }),
        }),
        gatewayKey.address,
        signal(),
      );
    const first = await ask(computeKey.address);
    assert.equal(first.terms?.route?.computeNodeId, computeKey.address);
    // While the approved node is online, proposing another one changes nothing.
    const pinned = await ask(spare.address);
    assert.deepEqual(bytesOf(pinned), bytesOf(first));

    w.clock.advance(w.directory.heartbeatTimeoutMs + 1);
    await w.directory.heartbeat(spare.address, undefined);
    assert.deepEqual(await w.directory.markOffline(), [computeKey.address]);
    // The old approval has not expired: only the node's absence lets it be replaced.
    assert.ok(
      timestampMs(first.terms?.expiresAt ?? timestampFromDate(new Date(0))) >
        w.clock.now().getTime(),
    );
    const rerouted = await ask(spare.address);
    assert.equal(rerouted.terms?.route?.computeNodeId, spare.address);
    assert.ok(rerouted.validatorSignatures.length >= 2);
    // The replacement is now the approval of record: asked again, it comes back unchanged.
    assert.deepEqual(bytesOf(await ask(spare.address)), bytesOf(rerouted));
    assert.deepEqual(bytesOf(await ask(computeKey.address)), bytesOf(rerouted));
    await w.engine.idle();
  });

  test("validators that re-execute outvote the registry's proposed verdict; the node gets the failure once", async () => {
    const executors = createCompletionExecutorRegistry([
      {
        name: "replay",
        supports: () => true,
        reexecute: async () => ({ agrees: false, reason: "logits differ" }),
      },
    ]);
    const w = await world(backend, "engine4", executors);
    const approval = await w.engine.requestPreprocessing(
      preprocessingRequest("job-4"),
      gatewayKey.address,
      signal(),
    );
    const result = new Uint8Array([1, 2, 3]);
    const request = create(RequestCompletionValidationRequestSchema, {
      protocolVersion: PROTOCOL_VERSION,
      computeCompletion: signedCompletion(computeKey, "job-4", sha256(result), w.clock.now()),
      preprocessingValidation: approval,
      evidence: {
        result: { case: "resultData", value: result },
        input: { case: "inputData", value: new Uint8Array([9]) },
      },
    });
    const verdict = await w.engine.requestCompletion(request, gatewayKey.address, signal());
    assert.equal(verdict.terms?.approved, false);
    const strikes = (await w.directory.getEntry(computeKey.address))?.standing?.strikes;
    assert.equal(strikes, 1);

    const again = await w.engine.requestCompletion(request, gatewayKey.address, signal());
    assert.deepEqual(
      toBinary(CompletionValidationSchema, again),
      toBinary(CompletionValidationSchema, verdict),
    );
    assert.equal(
      (await w.directory.getEntry(computeKey.address))?.standing?.strikes,
      1,
      "recorded once",
    );
    await w.engine.idle();
  });

  test("a caller that goes away ends the fan-out with deadline_exceeded and penalizes no one", async () => {
    const w = await world(backend, "engine5");
    const before = await Promise.all(validatorKeys.map((k) => w.directory.getValidator(k.address)));
    for (const key of validatorKeys) w.behaviour.hang.add(key.address);
    const caller = new AbortController();
    const pending = w.engine.requestPreprocessing(
      preprocessingRequest("job-5"),
      gatewayKey.address,
      caller.signal,
    );
    setTimeout(() => caller.abort(), 20);
    const error = await pending.catch((e: unknown) => e);
    assert.ok(error instanceof ValidationError);
    assert.equal(error.kind, "deadline_exceeded");
    await w.engine.idle();
    const now = await Promise.all(validatorKeys.map((k) => w.directory.getValidator(k.address)));
    assert.deepEqual(
      now.map((v) => v?.reputation),
      before.map((v) => v?.reputation),
    );
  });

  test("fewer active validators than the quorum: unavailable before anyone is asked", async () => {
    const w = await world(backend, "engine6");
    const [first, second] = validatorKeys;
    assert.ok(first && second);
    await w.directory.unregisterValidator(first.address, first.address);
    await w.directory.unregisterValidator(second.address, second.address);
    const error = await w.engine
      .requestPreprocessing(preprocessingRequest("job-6"), gatewayKey.address, signal())
      .catch((e: unknown) => e);
    assert.ok(error instanceof ValidationError);
    assert.deepEqual(
      [error.kind, error.message],
      ["unavailable", "1 active validator(s), 2 signatures required"],
    );
    assert.equal(w.behaviour.calls, 0);
  });
});
