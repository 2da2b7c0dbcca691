import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import type { KeyPair } from "@tessera/identity/keys";
import { signTerms } from "@tessera/identity/validation-bundle";
import { PreprocessingTermsSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { ValidatorInfo } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { gatherSignatures, QuorumNotReachedError, type ValidatorReply } from "./fan-out.js";
import type { ValidatorEvent } from "./sources.js";
import { keyPairs, validatorInfo } from "./test-fixtures.js";

const terms = create(PreprocessingTermsSchema, { requestId: "task-1", modelId: "m" });
const otherTerms = create(PreprocessingTermsSchema, { requestId: "task-2", modelId: "m" });

type Behaviour = "sign" | "hang" | "down" | "refuse" | "sign-other" | "slow-sign";

/** Validators behaving as told, plus the reputation events reported for them. */
function network(behaviours: Behaviour[]) {
  const keys = keyPairs(behaviours.length);
  const infos = keys.map((k) => validatorInfo(k));
  const byAddress = new Map<string, { key: KeyPair; behaviour: Behaviour }>(
    keys.map((key, i) => [key.address, { key, behaviour: behaviours[i] ?? "sign" }]),
  );
  const reports: [string, ValidatorEvent][] = [];
  const call = async (validator: ValidatorInfo, signal: AbortSignal): Promise<ValidatorReply> => {
    const { key, behaviour } = byAddress.get(validator.address) ?? {};
    if (key === undefined) throw new Error("unknown validator");
    switch (behaviour) {
      case "sign":
        return { kind: "signed", signature: signTerms(key, terms) };
      case "sign-other":
        return { kind: "signed", signature: signTerms(key, otherTerms) };
      case "refuse":
        return { kind: "refused", reason: "price does not follow the split" };
      case "down":
        return { kind: "unreachable", reason: "connect ECONNREFUSED" };
      case "slow-sign":
        await new Promise((resolve) => setTimeout(resolve, 30));
        return { kind: "signed", signature: signTerms(key, terms) };
      default:
        // Hangs until the fan-out gives up on it.
        return new Promise((resolve) =>
          signal.addEventListener("abort", () =>
            resolve({ kind: "unreachable", reason: "aborted" }),
          ),
        );
    }
  };
  const options = (quorum: number, signal = new AbortController().signal) => ({
    validators: infos,
    quorum,
    terms,
    timeoutMs: 100,
    signal,
    call,
    report: async (address: string, event: ValidatorEvent) => {
      reports.push([address, event]);
    },
  });
  return {
    keys,
    infos,
    reports,
    options,
    eventOf: (i: number) => reports.find(([a]) => a === keys[i]?.address)?.[1],
  };
}

describe("gatherSignatures (M of N)", () => {
  test("2 of 3 with one validator down reaches quorum; the down one loses reputation", async () => {
    const net = network(["sign", "down", "sign"]);
    const gathered = await gatherSignatures(net.options(2));
    assert.deepEqual(
      gathered.signatures.map((s) => s.validatorAddress).sort(),
      [net.keys[0]?.address, net.keys[2]?.address].sort(),
    );
    await gathered.settled;
    assert.equal(net.eventOf(0), "ok");
    assert.equal(net.eventOf(1), "timeout");
    assert.equal(net.eventOf(2), "ok");
  });

  test("quorum returns without waiting for a hanging validator, which is reported once it times out", async () => {
    const net = network(["sign", "hang", "sign"]);
    const gathered = await gatherSignatures(net.options(2));
    assert.equal(gathered.signatures.length, 2);
    assert.equal(net.eventOf(1), undefined, "not judged before its timeout");
    const outcomes = await gathered.settled;
    assert.equal(outcomes.find((o) => o.address === net.keys[1]?.address)?.outcome, "timeout");
    assert.equal(net.eventOf(1), "timeout");
  });

  test("keeps only the first M signatures", async () => {
    const net = network(["sign", "sign", "slow-sign"]);
    const gathered = await gatherSignatures(net.options(2));
    assert.equal(gathered.signatures.length, 2);
    await gathered.settled;
    assert.equal(net.eventOf(2), "ok", "a late but valid signer still gains reputation");
  });

  test("below quorum fails with unavailable naming each missing validator", async () => {
    const net = network(["sign", "down", "hang"]);
    const error = await gatherSignatures(net.options(2)).then(
      () => assert.fail("quorum should not be reached"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof QuorumNotReachedError);
    assert.equal(error.kind, "unavailable");
    assert.match(error.message, /^1 of 2 required validator signatures \(3 asked\)/);
    assert.match(error.message, new RegExp(`${net.keys[1]?.address} unreachable`));
    assert.match(error.message, new RegExp(`${net.keys[2]?.address} timeout`));
  });

  test("a signature over other terms counts as invalid and is reported", async () => {
    const net = network(["sign", "sign-other", "sign"]);
    const gathered = await gatherSignatures(net.options(3)).catch((e: unknown) => e);
    assert.ok(gathered instanceof QuorumNotReachedError);
    await gathered.settled;
    assert.equal(net.eventOf(1), "invalid_signature");
  });

  test("refusals that make quorum impossible fail with failed_precondition quoting the reason", async () => {
    const net = network(["refuse", "refuse", "sign"]);
    const error = await gatherSignatures(net.options(2)).catch((e: unknown) => e);
    assert.ok(error instanceof QuorumNotReachedError);
    assert.equal(error.kind, "failed_precondition");
    assert.match(error.message, /price does not follow the split/);
    await error.settled;
    assert.equal(net.eventOf(0), undefined, "disagreeing is not penalized");
  });

  test("fewer validators than the quorum fail at once", async () => {
    const net = network(["sign"]);
    const error = await gatherSignatures(net.options(2)).catch((e: unknown) => e);
    assert.ok(error instanceof QuorumNotReachedError);
    assert.equal(error.kind, "unavailable");
  });

  test("the caller's cancellation stops the wait without penalizing anyone", async () => {
    const net = network(["sign", "hang", "hang"]);
    const caller = new AbortController();
    const pending = gatherSignatures(net.options(2, caller.signal));
    setTimeout(() => caller.abort(), 10);
    const error = await pending.catch((e: unknown) => e);
    assert.ok(error instanceof QuorumNotReachedError);
    assert.equal(error.kind, "deadline_exceeded");
    await error.settled;
    assert.equal(net.eventOf(1), undefined);
    assert.equal(net.eventOf(2), undefined);
  });
});
