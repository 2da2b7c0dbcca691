import assert from "node:assert/strict";
import { test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { generateKeyPair } from "@tessera/identity/keys";
import {
  CompletionValidationSchema,
  PreprocessingValidationSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import {
  createApprovalStore,
  type ValidationTables,
  validationMigrations,
} from "./approval-store.js";

const MINUTE = 60_000;

await describeEachStore("approval store", (backend: StoreBackend) => {
  test("a validator's open approvals are its unexpired, unsettled preprocessing approvals", async () => {
    const approvals = createApprovalStore(
      await backend.open<ValidationTables>({ migrations: validationMigrations, space: "open" }),
    );
    const [v, w] = [generateKeyPair().address, generateKeyPair().address];
    const now = new Date("2030-01-01T00:00:00Z");
    const at = (minutes: number) => new Date(now.getTime() + minutes * MINUTE);
    const preprocessing = async (requestId: string, expiresAt: Date, signers: string[]) => {
      const bundle = create(PreprocessingValidationSchema, {
        terms: { requestId, expiresAt: timestampFromDate(expiresAt) },
        validatorSignatures: signers.map((validatorAddress) => ({ validatorAddress })),
      });
      await approvals.put(
        "preprocessing",
        requestId,
        {
          requestHash: requestId,
          bundle: toBinary(PreprocessingValidationSchema, bundle),
          expiresAt,
        },
        at(-1),
      );
    };
    await preprocessing("expired", at(-0.5), [v]);
    await preprocessing("open-soon", at(3), [v, w]);
    await preprocessing("open-later", at(9), [w]);
    await preprocessing("settled", at(12), [v]);
    await approvals.put(
      "completion",
      "settled",
      {
        requestHash: "settled",
        bundle: toBinary(CompletionValidationSchema, create(CompletionValidationSchema, {})),
        expiresAt: undefined,
      },
      now,
    );

    assert.deepEqual(await approvals.openUntil(v, now), at(3));
    assert.deepEqual(await approvals.openUntil(w, now), at(9));
    assert.equal(await approvals.openUntil(v, at(3)), undefined, "expired at its expiry");
    assert.equal(await approvals.openUntil(generateKeyPair().address, now), undefined);
  });
});
