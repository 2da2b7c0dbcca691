import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { sha256 } from "@tessera/identity/hash";
import { generateKeyPair } from "@tessera/identity/keys";
import { signTerms, verifyValidationBundle } from "@tessera/identity/validation-bundle";
import {
  CompletionValidationSchema,
  PreprocessingValidationSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { buildCompletionTerms } from "./completion.js";
import { DEFAULT_PAYMENT_SPLIT } from "./payment-tree.js";
import { resolveValidationPolicy } from "./policy.js";
import { buildPreprocessingTerms } from "./preprocessing.js";
import {
  computeRecord,
  entryOf,
  inferenceWork,
  keyPairs,
  NOW,
  signedCompletion,
} from "./test-fixtures.js";

const validators = keyPairs(5);
const addresses = validators.map((v) => v.address);
const gateway = generateKeyPair();
const client = generateKeyPair();
const node = generateKeyPair();
const policy = resolveValidationPolicy({ treasuryAddress: generateKeyPair().address });

async function preprocessingBundle(signers = validators.slice(0, 3)) {
  const terms = buildPreprocessingTerms({
    work: inferenceWork(gateway, client),
    node: entryOf(await computeRecord(node)),
    subnet: { subnetId: 0n, split: DEFAULT_PAYMENT_SPLIT, free: false },
    validatorAddresses: addresses,
    expiresAt: new Date(NOW.getTime() + 60_000),
    policy,
  });
  return create(PreprocessingValidationSchema, {
    terms,
    validatorSignatures: signers.map((v) => signTerms(v, terms, NOW)),
  });
}

describe("verifyValidationBundle", () => {
  test("a 3-of-5 preprocessing approval verifies offline with the validators' addresses", async () => {
    const bundle = await preprocessingBundle();
    const verdict = verifyValidationBundle(bundle, { validators: addresses, quorum: 3, now: NOW });
    assert.deepEqual(verdict, { valid: true, signers: addresses.slice(0, 3) });
  });

  test("it verifies with ValidatorInfo-style address and public key pairs", async () => {
    const bundle = await preprocessingBundle();
    const keys = validators.map((v) => ({ address: v.address, publicKey: v.publicKey }));
    assert.equal(verifyValidationBundle(bundle, { validators: keys, quorum: 3 }).valid, true);
  });

  test("tampering with the price invalidates every signature", async () => {
    const bundle = await preprocessingBundle();
    const tree = bundle.terms?.paymentTree;
    assert.ok(tree);
    tree.computeAmount = (BigInt(tree.computeAmount) + 1n).toString();
    const verdict = verifyValidationBundle(bundle, { validators: addresses, quorum: 3 });
    assert.equal(verdict.valid, false);
    assert.match(!verdict.valid ? verdict.reason : "", /signature 1 .* does not verify/);
  });

  test("tampering with the route or the expiry is caught", async () => {
    const rerouted = await preprocessingBundle();
    if (rerouted.terms?.route) rerouted.terms.route.computeNodeAddress = generateKeyPair().address;
    assert.equal(
      verifyValidationBundle(rerouted, { validators: addresses, quorum: 3 }).valid,
      false,
    );

    const extended = await preprocessingBundle();
    if (extended.terms) extended.terms.expiresAt = timestampFromDate(new Date(NOW.getTime() + 9e9));
    assert.equal(
      verifyValidationBundle(extended, { validators: addresses, quorum: 3 }).valid,
      false,
    );
  });

  test("a flipped signature byte, a stranger's signature and a repeated signer are refused", async () => {
    const flipped = await preprocessingBundle();
    const sig = flipped.validatorSignatures[1]?.signature;
    assert.ok(sig);
    sig[0] = (sig[0] ?? 0) ^ 1;
    assert.match(
      reason(verifyValidationBundle(flipped, { validators: addresses, quorum: 2 })),
      /signature 2 .* does not verify/,
    );

    const stranger = await preprocessingBundle([...validators.slice(0, 2), generateKeyPair()]);
    assert.match(
      reason(verifyValidationBundle(stranger, { validators: addresses, quorum: 2 })),
      /not by a listed validator/,
    );

    const repeated = await preprocessingBundle(
      [validators[0], validators[0], validators[1]].filter((v) => v !== undefined),
    );
    assert.match(
      reason(verifyValidationBundle(repeated, { validators: addresses, quorum: 2 })),
      /repeats a validator/,
    );
  });

  test("fewer signatures than the quorum do not verify", async () => {
    const bundle = await preprocessingBundle(validators.slice(0, 2));
    assert.equal(
      reason(verifyValidationBundle(bundle, { validators: addresses, quorum: 3 })),
      "2 validator signature(s), 3 required",
    );
  });

  test("an expired approval does not verify when the time is given", async () => {
    const bundle = await preprocessingBundle();
    const later = new Date(NOW.getTime() + 60_000);
    assert.equal(
      reason(verifyValidationBundle(bundle, { validators: addresses, quorum: 3, now: later })),
      "the approval has expired",
    );
  });

  test("a completion approval verifies, and not with a forged node completion", async () => {
    const pre = await preprocessingBundle();
    assert.ok(pre.terms);
    const completion = signedCompletion(node, "task-1", sha256(new Uint8Array([1, 2, 3])));
    const terms = buildCompletionTerms(completion, pre.terms, true);
    const bundle = create(CompletionValidationSchema, {
      terms,
      validatorSignatures: validators.slice(0, 3).map((v) => signTerms(v, terms, NOW)),
    });
    assert.equal(verifyValidationBundle(bundle, { validators: addresses, quorum: 3 }).valid, true);

    // Signed by another key than the routed node's: every validator signature still holds over
    // these terms, but the completion inside does not.
    const forged = signedCompletion(generateKeyPair(), "task-1", completion.resultHash);
    const forgedTerms = buildCompletionTerms(
      { ...forged, computeNodeAddress: node.address },
      pre.terms,
      true,
    );
    const forgedBundle = create(CompletionValidationSchema, {
      terms: forgedTerms,
      validatorSignatures: validators.slice(0, 3).map((v) => signTerms(v, forgedTerms, NOW)),
    });
    assert.equal(
      reason(verifyValidationBundle(forgedBundle, { validators: addresses, quorum: 3 })),
      "the compute node's completion signature does not verify",
    );
  });

  test("a quorum below 1 is a programming error", async () => {
    const bundle = await preprocessingBundle();
    assert.throws(
      () => verifyValidationBundle(bundle, { validators: addresses, quorum: 0 }),
      RangeError,
    );
  });
});

function reason(verdict: ReturnType<typeof verifyValidationBundle>): string {
  return verdict.valid ? "valid" : verdict.reason;
}
