import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { sha256 } from "@tessera/identity/hash";
import { generateKeyPair } from "@tessera/identity/keys";
import { signTerms, verifyValidatorSignature } from "@tessera/identity/validation-bundle";
import { PreprocessingValidationSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  SubnetMetadataSchema,
  SubnetStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import {
  ExecutionEvidenceSchema,
  WorkKind,
} from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import {
  SignCompletionRequestSchema,
  SignPreprocessingRequestSchema,
} from "@tessera/proto/tessera/registry/v1/validator_service_pb.js";
import { buildCompletionTerms } from "./completion.js";
import { ValidationError, type ValidationErrorKind } from "./errors.js";
import { createCompletionExecutorRegistry } from "./executors.js";
import { DEFAULT_PAYMENT_SPLIT } from "./payment-tree.js";
import { resolveValidationPolicy } from "./policy.js";
import { buildPreprocessingTerms } from "./preprocessing.js";
import { PROTOCOL_VERSION } from "./protocol-version.js";
import {
  computeRecord,
  entryOf,
  inferenceWork,
  keyPairs,
  MODEL_ID,
  memorySources,
  NOW,
  signedCompletion,
  validatorInfo,
} from "./test-fixtures.js";
import { createValidatorSigner } from "./validator-signer.js";

const validators = keyPairs(3);
const [self, second] = validators as [(typeof validators)[0], (typeof validators)[0]];
const node = generateKeyPair();
const gateway = generateKeyPair();
const client = generateKeyPair();
const treasury = generateKeyPair().address;
const policy = resolveValidationPolicy({ treasuryAddress: treasury });
const record = await computeRecord(node);

function setup() {
  const sources = memorySources(
    [entryOf(record)],
    validators.map((v) => validatorInfo(v)),
    2,
  );
  const executors = createCompletionExecutorRegistry();
  const signer = createValidatorSigner({
    keyPair: self,
    sources,
    policy,
    executors,
    clock: () => NOW,
  });
  const work = inferenceWork(gateway, client);
  const terms = buildPreprocessingTerms({
    work,
    node: entryOf(record),
    subnet: { subnetId: 0n, split: DEFAULT_PAYMENT_SPLIT, free: false },
    validatorAddresses: validators.map((v) => v.address),
    expiresAt: new Date(NOW.getTime() + policy.approvalTtlMs),
    policy,
  });
  return { sources, executors, signer, work, terms };
}

function request(work: ReturnType<typeof setup>["work"], terms: ReturnType<typeof setup>["terms"]) {
  return create(SignPreprocessingRequestSchema, { protocolVersion: PROTOCOL_VERSION, work, terms });
}

async function refusal(
  promise: Promise<unknown>,
): Promise<{ kind: ValidationErrorKind; message: string }> {
  const error = await promise.then(
    () => assert.fail("the validator signed"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ValidationError, `expected a ValidationError, got ${String(error)}`);
  return { kind: error.kind, message: error.message };
}

describe("validator signer: preprocessing", () => {
  test("signs terms it agrees with; the signature verifies over the terms", async () => {
    const { signer, work, terms } = setup();
    const signature = await signer.signPreprocessing(request(work, terms));
    assert.equal(signature.validatorAddress, self.address);
    assert.ok(verifyValidatorSignature(terms, signature));
    // 1 s of inference at 3,600,000 per hour is 1000 base units, split 80/10/5/5.
    assert.equal(terms.paymentTree?.computeAmount, "800");
    assert.equal(terms.paymentTree?.treasuryAmount, "50");
  });

  const refusals: [string, (s: ReturnType<typeof setup>) => void, ValidationErrorKind, RegExp][] = [
    [
      "a compute amount one unit higher",
      (s) => {
        if (s.terms.paymentTree) s.terms.paymentTree.computeAmount = "801";
      },
      "failed_precondition",
      /payment_tree\.compute_amount/,
    ],
    [
      "another treasury",
      (s) => {
        if (s.terms.paymentTree) s.terms.paymentTree.treasuryAddress = generateKeyPair().address;
      },
      "failed_precondition",
      /payment_tree\.treasury_address/,
    ],
    [
      "a route to another endpoint",
      (s) => {
        if (s.terms.route) s.terms.route.computeNodeEndpoint = "http://evil:1";
      },
      "failed_precondition",
      /route\.compute_node_endpoint/,
    ],
    [
      "an offline node",
      (s) => s.sources.nodes.set(node.address, entryOf(record, { online: false })),
      "failed_precondition",
      /is offline/,
    ],
    [
      "a banned node",
      (s) =>
        s.sources.nodes.set(
          node.address,
          entryOf(record, { bannedUntil: new Date(NOW.getTime() + 1000) }),
        ),
      "failed_precondition",
      /is banned/,
    ],
    ["an unknown node", (s) => s.sources.nodes.clear(), "failed_precondition", /not registered/],
    [
      "a node record altered after signing",
      (s) => s.sources.nodes.set(node.address, entryOf({ ...record, pricePerHour: "1" })),
      "failed_precondition",
      /invalid record: signature does not verify/,
    ],
    [
      "a model the node does not host",
      (s) => {
        s.work.modelId = "other";
        s.terms.modelId = "other";
      },
      "failed_precondition",
      /does not host model "other"/,
    ],
    [
      "an expiry beyond the validator's limit",
      (s) => {
        s.terms.expiresAt = timestampFromDate(new Date(NOW.getTime() + 3_600_000));
      },
      "failed_precondition",
      /more than 900000 ms away/,
    ],
    [
      "expired terms",
      (s) => {
        s.terms.expiresAt = timestampFromDate(new Date(NOW.getTime() - 1));
      },
      "failed_precondition",
      /already expired/,
    ],
    [
      "terms that do not pay this validator",
      (s) => {
        if (s.terms.paymentTree) s.terms.paymentTree.validatorAddresses = [second.address];
      },
      "failed_precondition",
      /not among the paid validators/,
    ],
    [
      "a paid stranger",
      (s) => {
        if (s.terms.paymentTree)
          s.terms.paymentTree.validatorAddresses = [
            ...s.terms.paymentTree.validatorAddresses,
            generateKeyPair().address,
          ].sort();
      },
      "failed_precondition",
      /validator_addresses/,
    ],
    [
      "a price above the client's max_price",
      (s) => {
        s.work.maxPrice = "999";
      },
      "failed_precondition",
      /above max_price 999/,
    ],
    [
      "terms for another request",
      (s) => {
        s.terms.requestId = "task-2";
      },
      "failed_precondition",
      /request_id differs/,
    ],
    [
      "another protocol major version",
      (s) => {
        s.terms.protocolVersion = { ...PROTOCOL_VERSION, major: 2 };
      },
      "failed_precondition",
      /2\.0\.0 is not compatible with 1\.0\.0/,
    ],
    [
      "a work without a client",
      (s) => {
        s.work.clientAddress = "";
      },
      "invalid_argument",
      /client_address/,
    ],
  ];
  for (const [name, mutate, kind, message] of refusals) {
    test(`refuses ${name}`, async () => {
      const s = setup();
      mutate(s);
      const error = await refusal(s.signer.signPreprocessing(request(s.work, s.terms)));
      assert.equal(error.kind, kind);
      assert.match(error.message, message);
    });
  }

  test("signs a batch job routed to a node that does not host its model (the node fetches it)", async () => {
    const s = setup();
    const work = inferenceWork(gateway, client, { requestId: "job-1" });
    work.kind = WorkKind.BATCH_JOB;
    work.modelId = "blobs-classifier";
    work.estimatedComputeMs = 2_000n;
    const terms = buildPreprocessingTerms({
      work,
      node: entryOf(record),
      subnet: { subnetId: 0n, split: DEFAULT_PAYMENT_SPLIT, free: false },
      validatorAddresses: validators.map((v) => v.address),
      expiresAt: new Date(NOW.getTime() + policy.approvalTtlMs),
      policy,
    });
    const signature = await s.signer.signPreprocessing(request(work, terms));
    assert.ok(verifyValidatorSignature(terms, signature));
    // 2 s at 3,600,000 per hour is 2000 base units.
    assert.equal(terms.paymentTree?.computeAmount, "1600");
  });

  test("refuses a subnet it does not know", async () => {
    const s = setup();
    s.work.subnetId = 7n;
    s.terms.subnetId = 7n;
    const error = await refusal(s.signer.signPreprocessing(request(s.work, s.terms)));
    assert.deepEqual(error, { kind: "not_found", message: "subnet 7 is unknown" });
  });

  test("follows the subnet's own split, and refuses the default one there", async () => {
    const s = setup();
    const subnetRecord = await computeRecord(node, { subnetId: 7n, sequence: 2n });
    s.sources.nodes.set(node.address, entryOf(subnetRecord));
    s.sources.subnets.set(
      7n,
      create(SubnetMetadataSchema, {
        subnetId: 7n,
        status: SubnetStatus.ACTIVE,
        models: [{ modelId: MODEL_ID }],
        paymentSplit: { computeBps: 7000, gatewayBps: 2000, validatorBps: 500, treasuryBps: 500 },
      }),
    );
    const work = inferenceWork(gateway, client, { subnetId: 7n });
    const termsWith = (split: typeof DEFAULT_PAYMENT_SPLIT) =>
      buildPreprocessingTerms({
        work,
        node: entryOf(subnetRecord),
        subnet: { subnetId: 7n, split, free: false },
        validatorAddresses: validators.map((v) => v.address),
        expiresAt: new Date(NOW.getTime() + 60_000),
        policy,
      });
    const own = termsWith({
      computeBps: 7000,
      gatewayBps: 2000,
      validatorBps: 500,
      treasuryBps: 500,
    });
    await s.signer.signPreprocessing(request(work, own));
    assert.equal(own.paymentTree?.gatewayAmount, "200");
    const error = await refusal(
      s.signer.signPreprocessing(request(work, termsWith(DEFAULT_PAYMENT_SPLIT))),
    );
    assert.match(error.message, /payment_tree\.compute_amount does not follow/);
  });
});

describe("validator signer: completion", () => {
  async function completionCase(resultHash = sha256(new Uint8Array([42]))) {
    const s = setup();
    const preprocessing = create(PreprocessingValidationSchema, {
      terms: s.terms,
      validatorSignatures: validators.slice(0, 2).map((v) => signTerms(v, s.terms, NOW)),
    });
    const completion = signedCompletion(node, "task-1", resultHash, new Date(NOW.getTime() + 1000));
    const completionRequest = (approved: boolean, evidence?: Uint8Array) =>
      create(SignCompletionRequestSchema, {
        protocolVersion: PROTOCOL_VERSION,
        terms: buildCompletionTerms(completion, s.terms, approved),
        preprocessingValidation: preprocessing,
        ...(evidence ? { evidence: { result: { case: "resultData", value: evidence } } } : {}),
      });
    return { ...s, preprocessing, completion, completionRequest };
  }
  const signal = new AbortController().signal;

  test("approves work whose result hashes to the node's signed hash", async () => {
    const c = await completionCase();
    const req = c.completionRequest(true, new Uint8Array([42]));
    const signature = await c.signer.signCompletion(req, signal);
    assert.ok(req.terms && verifyValidatorSignature(req.terms, signature));
  });

  test("a result that does not match: signs only the rejection", async () => {
    const c = await completionCase();
    const approve = await refusal(
      c.signer.signCompletion(c.completionRequest(true, new Uint8Array([7])), signal),
    );
    assert.equal(approve.kind, "failed_precondition");
    assert.match(
      approve.message,
      /verdict differs: this validator rejects the work \(the result does not hash/,
    );
    const reject = c.completionRequest(false, new Uint8Array([7]));
    assert.ok(
      reject.terms &&
        verifyValidatorSignature(reject.terms, await c.signer.signCompletion(reject, signal)),
    );
  });

  test("a completion whose node signature does not verify is unauthenticated", async () => {
    const c = await completionCase();
    const req = c.completionRequest(true);
    const completion = req.terms?.computeCompletion;
    assert.ok(completion);
    completion.computationTimeMs = 1n;
    assert.equal((await refusal(c.signer.signCompletion(req, signal))).kind, "unauthenticated");
  });

  test("a completion by another node than the approved route is refused", async () => {
    const c = await completionCase();
    const other = signedCompletion(generateKeyPair(), "task-1", c.completion.resultHash);
    const req = c.completionRequest(true);
    if (req.terms) req.terms.computeCompletion = other;
    const error = await refusal(c.signer.signCompletion(req, signal));
    assert.equal(error.kind, "failed_precondition");
    assert.match(error.message, /not by the compute node of the approved route/);
  });

  test("an approval below quorum, or altered, is refused", async () => {
    const c = await completionCase();
    const req = c.completionRequest(true);
    req.preprocessingValidation?.validatorSignatures.pop();
    assert.match(
      (await refusal(c.signer.signCompletion(req, signal))).message,
      /preprocessing approval is invalid: 1 validator signature/,
    );

    const altered = c.completionRequest(true);
    const terms = altered.preprocessingValidation?.terms;
    if (terms?.paymentTree) terms.paymentTree.gatewayAmount = "1";
    assert.match(
      (await refusal(c.signer.signCompletion(altered, signal))).message,
      /preprocessing approval is invalid/,
    );
  });

  test("work finished after the approval expired is refused", async () => {
    const c = await completionCase();
    const late = signedCompletion(
      node,
      "task-1",
      c.completion.resultHash,
      new Date(NOW.getTime() + 3_600_000),
    );
    const req = c.completionRequest(true);
    if (req.terms) req.terms.computeCompletion = late;
    assert.match(
      (await refusal(c.signer.signCompletion(req, signal))).message,
      /finished after the preprocessing approval expired/,
    );
  });

  test("a registered executor's re-execution decides the verdict", async () => {
    const c = await completionCase();
    c.executors.register({
      name: "replay",
      supports: (task) => task.modelId === MODEL_ID && task.evidence.input.case === "inputData",
      reexecute: async (task) => ({
        agrees: task.evidence.input.case === "inputData" && task.evidence.input.value[0] === 1,
        reason: "output differs",
      }),
    });
    const withInput = (approved: boolean, input: number) => {
      const req = c.completionRequest(approved, new Uint8Array([42]));
      req.evidence = create(ExecutionEvidenceSchema, {
        result: { case: "resultData", value: new Uint8Array([42]) },
        input: { case: "inputData", value: new Uint8Array([input]) },
      });
      return req;
    };
    await c.signer.signCompletion(withInput(true, 1), signal);
    assert.match(
      (await refusal(c.signer.signCompletion(withInput(true, 2), signal))).message,
      /re-execution by replay disagrees: output differs/,
    );
    await c.signer.signCompletion(withInput(false, 2), signal);
  });

  test("an executor that cannot reach a verdict blocks signing with unavailable", async () => {
    const c = await completionCase();
    const unregister = c.executors.register({
      name: "first",
      supports: () => true,
      reexecute: async () => ({ agrees: true }),
    });
    unregister();
    c.executors.register({
      name: "broken",
      supports: () => true,
      reexecute: async () => {
        throw new Error("model not cached");
      },
    });
    assert.deepEqual(c.executors.names(), ["broken"]);
    const req = c.completionRequest(true, new Uint8Array([42]));
    const error = await refusal(c.signer.signCompletion(req, signal));
    assert.deepEqual(error, {
      kind: "unavailable",
      message: "executor broken could not re-execute the work: model not cached",
    });
  });
});
