import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type CompletionTerms,
  CompletionTermsSchema,
  type CompletionValidation,
  CompletionValidationSchema,
  ComputeCompletionSchema,
  PreprocessingTermsSchema,
  PreprocessingValidationSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { sha256 } from "./hash.js";
import { generateKeyPair, type KeyPair } from "./keys.js";
import {
  type BundleCheckOptions,
  type BundleVerdict,
  signComputeCompletion,
  signTerms,
  type ValidationBundle,
  verifyComputeCompletion,
  verifyValidationBundle,
  verifyValidationBundleAsync,
  verifyValidatorSignature,
} from "./validation-bundle.js";

const NOW = new Date("2030-01-01T00:00:00Z");
const validators = Array.from({ length: 5 }, () => generateKeyPair());
const addresses = validators.map((v) => v.address);
const node = generateKeyPair();

function completionTerms(requestId = "task-1", nodeKey: KeyPair = node): CompletionTerms {
  const completion = signComputeCompletion(
    create(ComputeCompletionSchema, {
      protocolVersion: { major: 1 },
      requestId,
      computeNodeAddress: nodeKey.address,
      resultHash: sha256(new Uint8Array([1, 2, 3])),
      completedAt: timestampFromDate(NOW),
      computationTimeMs: 12n,
    }),
    nodeKey,
  );
  return create(CompletionTermsSchema, {
    protocolVersion: { major: 1 },
    requestId,
    computeCompletion: completion,
    route: { computeNodeAddress: node.address, computeNodeId: node.address },
    paymentTree: {
      computeAmount: "800",
      gatewayAmount: "100",
      validatorAmount: "50",
      treasuryAmount: "50",
      computeAddress: node.address,
      validatorAddresses: addresses,
    },
    approved: true,
  });
}

function completionBundle(
  signers: readonly KeyPair[] = validators.slice(0, 3),
  terms: CompletionTerms = completionTerms(),
): CompletionValidation {
  return create(CompletionValidationSchema, {
    terms,
    validatorSignatures: signers.map((v) => signTerms(v, terms, NOW)),
  });
}

/** Both verifiers agree on every bundle; returns their common verdict. */
async function check(
  bundle: ValidationBundle,
  options: BundleCheckOptions,
): Promise<BundleVerdict> {
  const sync = verifyValidationBundle(bundle, options);
  const async = await verifyValidationBundleAsync(bundle, options);
  assert.deepEqual(async, sync, "the async verifier must agree with the sync one");
  return sync;
}

function reason(verdict: BundleVerdict): string {
  return verdict.valid ? "valid" : verdict.reason;
}

describe("validation bundles", () => {
  test("a 3-of-5 completion approval verifies offline, with addresses or address and key pairs", async () => {
    const bundle = completionBundle();
    assert.deepEqual(await check(bundle, { validators: addresses, quorum: 3 }), {
      valid: true,
      signers: addresses.slice(0, 3),
    });
    const keys = validators.map((v) => ({ address: v.address, publicKey: v.publicKey }));
    assert.equal((await check(bundle, { validators: keys, quorum: 3 })).valid, true);
  });

  test("changing any term after signing (the tree, the request id, the verdict) breaks it", async () => {
    for (const tamper of [
      (t: CompletionTerms) => {
        if (t.paymentTree) t.paymentTree.computeAmount = "801";
      },
      (t: CompletionTerms) => {
        t.requestId = "task-2";
      },
      (t: CompletionTerms) => {
        t.approved = false;
      },
    ]) {
      const bundle = completionBundle();
      assert.ok(bundle.terms);
      tamper(bundle.terms);
      assert.match(
        reason(await check(bundle, { validators: addresses, quorum: 3 })),
        /signature 1 .* does not verify over the terms/,
      );
    }
  });

  test("too few signatures, a stranger, a repeated signer and a flipped byte are refused", async () => {
    assert.equal(
      reason(
        await check(completionBundle(validators.slice(0, 2)), { validators: addresses, quorum: 3 }),
      ),
      "2 validator signature(s), 3 required",
    );
    assert.match(
      reason(
        await check(completionBundle([...validators.slice(0, 2), generateKeyPair()]), {
          validators: addresses,
          quorum: 2,
        }),
      ),
      /signature 3 .* is not by a listed validator/,
    );
    const first = validators[0] as KeyPair;
    assert.match(
      reason(await check(completionBundle([first, first]), { validators: addresses, quorum: 1 })),
      /signature 2 .* repeats a validator/,
    );
    const flipped = completionBundle();
    const bytes = flipped.validatorSignatures[1]?.signature;
    assert.ok(bytes);
    bytes[5] = (bytes[5] ?? 0) ^ 1;
    assert.match(
      reason(await check(flipped, { validators: addresses, quorum: 2 })),
      /signature 2 .* does not verify/,
    );
  });

  test("a completion by another key than the routed node's is refused", async () => {
    const impostor = generateKeyPair();
    const terms = completionTerms("task-1", impostor);
    assert.equal(
      reason(
        await check(completionBundle(validators.slice(0, 3), terms), {
          validators: addresses,
          quorum: 3,
        }),
      ),
      "the completion is not by the routed compute node",
    );
    const forged = completionTerms();
    if (forged.computeCompletion) forged.computeCompletion.computationTimeMs = 13n;
    assert.equal(
      verifyComputeCompletion(forged.computeCompletion ?? create(ComputeCompletionSchema)),
      false,
    );
    assert.equal(
      reason(
        await check(completionBundle(validators.slice(0, 3), forged), {
          validators: addresses,
          quorum: 3,
        }),
      ),
      "the compute node's completion signature does not verify",
    );
  });

  test("a preprocessing approval expires when the time is given", async () => {
    const terms = create(PreprocessingTermsSchema, {
      requestId: "task-1",
      expiresAt: timestampFromDate(new Date(NOW.getTime() + 60_000)),
    });
    const bundle = create(PreprocessingValidationSchema, {
      terms,
      validatorSignatures: validators.slice(0, 3).map((v) => signTerms(v, terms, NOW)),
    });
    assert.equal((await check(bundle, { validators: addresses, quorum: 3, now: NOW })).valid, true);
    assert.equal(
      reason(
        await check(bundle, {
          validators: addresses,
          quorum: 3,
          now: new Date(NOW.getTime() + 60_000),
        }),
      ),
      "the approval has expired",
    );
    const signature = bundle.validatorSignatures[0];
    assert.ok(signature);
    assert.equal(verifyValidatorSignature(terms, signature), true);
    assert.equal(verifyValidatorSignature({ ...terms, requestId: "task-2" }, signature), false);
  });

  test("a bundle without terms is invalid; a quorum below 1 is a programming error", async () => {
    assert.equal(
      reason(await check(create(CompletionValidationSchema), { validators: addresses, quorum: 1 })),
      "the bundle has no terms",
    );
    assert.throws(
      () => verifyValidationBundle(completionBundle(), { validators: addresses, quorum: 0 }),
      RangeError,
    );
    await assert.rejects(
      verifyValidationBundleAsync(completionBundle(), { validators: addresses, quorum: 0 }),
      RangeError,
    );
  });
});
