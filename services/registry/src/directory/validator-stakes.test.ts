import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { NodeType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { ValidatorStatus } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import { createDirectory, type Directory } from "./directory.js";
import { DirectoryError, type DirectoryErrorKind } from "./errors.js";
import type { ValidatorStakeOptions } from "./stakes.js";
import {
  createFakeClock,
  createMemoryWallet,
  type FakeClock,
  type MemoryWallet,
  openRegistryStore,
  sealedRecord,
  TEST_POW_DIFFICULTY,
} from "./test-fixtures.js";

const MINUTE = 60_000;

async function rejectsWith(promise: Promise<unknown>, kind: DirectoryErrorKind, message?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof DirectoryError, `expected a DirectoryError, got ${String(error)}`);
    assert.equal(error.kind, kind, error.message);
    if (message !== undefined) assert.match(error.message, message);
    return true;
  });
}

const validatorRecord = (keyPair: KeyPair, sequence = 1n) =>
  sealedRecord(keyPair, {
    nodeType: NodeType.VALIDATOR,
    endpoint: { url: "http://validator:7003" },
    sequence,
  });

await describeEachStore("validator stakes", (backend: StoreBackend) => {
  const registry = generateKeyPair().address;
  const treasury = generateKeyPair().address;
  let clock: FakeClock;
  let wallet: MemoryWallet;
  let directory: Directory;
  /** Until when the validators' approvals are open, as the approval store would say. */
  let openUntil: Map<string, Date>;
  let space = 0;

  async function open(stakes: Partial<ValidatorStakeOptions> = {}): Promise<Directory> {
    space += 1;
    return createDirectory({
      store: await openRegistryStore(backend, `vs${space}`),
      clock: clock.now,
      powDifficulty: TEST_POW_DIFFICULTY,
      minValidatorStake: 1000n,
      validatorStakes: {
        ledger: wallet,
        arbiterAddress: registry,
        slashBeneficiary: treasury,
        openApprovalsUntil: async (validator, now) => {
          const until = openUntil.get(validator);
          return until !== undefined && until > now ? until : undefined;
        },
        ...stakes,
      },
    });
  }

  beforeEach(async () => {
    clock = createFakeClock();
    wallet = createMemoryWallet();
    openUntil = new Map();
    directory = await open();
  });

  test("a validator registers only with its own locked stake naming this registry, of at least the minimum", async () => {
    const v = generateKeyPair();
    const record = await validatorRecord(v);
    const register = (amount: bigint, stakeId: string) =>
      directory.registerValidator(record, amount, stakeId, v.address);

    await rejectsWith(register(1000n, "s-none"), "failed_precondition", /does not exist/);
    wallet.lock({
      stakeId: "s-other",
      staker: generateKeyPair().address,
      amount: 5000n,
      arbiter: registry,
    });
    await rejectsWith(register(1000n, "s-other"), "permission_denied", /not the validator's/);
    wallet.lock({ stakeId: "s-arb", staker: v.address, amount: 5000n, arbiter: treasury });
    await rejectsWith(register(1000n, "s-arb"), "failed_precondition", /not this registry/);
    wallet.lock({ stakeId: "s-small", staker: v.address, amount: 999n, arbiter: registry });
    await rejectsWith(register(1000n, "s-small"), "failed_precondition", /holds 999/);
    await rejectsWith(register(999n, "s-small"), "invalid", /below the registry's minimum 1000/);
    await rejectsWith(register(0n, ""), "invalid", /below the registry's minimum/);
    assert.equal(await directory.getValidator(v.address), undefined, "nothing was written");

    wallet.lock({ stakeId: "s-ok", staker: v.address, amount: 1500n, arbiter: registry });
    const info = await register(1200n, "s-ok");
    assert.equal(info.status, ValidatorStatus.ACTIVE);
    assert.deepEqual([info.stakeId, info.stakeAmount], ["s-ok", "1200"]);
    assert.deepEqual(await register(1200n, "s-ok"), info, "the same registration again");
  });

  test("unregistering returns the stake once the validator's open approvals have expired", async () => {
    const v = generateKeyPair();
    wallet.lock({ stakeId: "s-1", staker: v.address, amount: 2000n, arbiter: registry });
    await directory.registerValidator(await validatorRecord(v), 2000n, "s-1", v.address);
    openUntil.set(v.address, new Date(clock.now().getTime() + 5 * MINUTE));

    const gone = await directory.unregisterValidator(v.address, v.address, "maintenance");
    assert.equal(gone.status, ValidatorStatus.INACTIVE);
    assert.equal(gone.stakeAmount, "2000", "still locked while its approval is open");
    assert.equal(wallet.stake("s-1")?.state, "locked");
    assert.deepEqual(await directory.releaseDueStakes(), []);

    // A stake that backed an ended registration cannot back a new one.
    await rejectsWith(
      directory.registerValidator(await validatorRecord(v, 2n), 2000n, "s-1", v.address),
      "failed_precondition",
      /being returned/,
    );

    clock.advance(5 * MINUTE);
    assert.deepEqual(await directory.releaseDueStakes(), ["s-1"]);
    assert.equal(wallet.stake("s-1")?.state, "unlocked");
    assert.equal((await directory.getValidator(v.address))?.stakeAmount, "0");
    assert.deepEqual(await directory.releaseDueStakes(), [], "returned once");
    assert.equal(wallet.calls.unlockStake, 1);

    wallet.lock({ stakeId: "s-2", staker: v.address, amount: 3000n, arbiter: registry });
    const back = await directory.registerValidator(
      await validatorRecord(v, 3n),
      3000n,
      "s-2",
      v.address,
    );
    assert.deepEqual([back.status, back.stakeId], [ValidatorStatus.ACTIVE, "s-2"]);
  });

  test("a wallet that cannot unlock leaves the validator inactive and the stake owed until a retry", async () => {
    const v = generateKeyPair();
    wallet.lock({ stakeId: "s-1", staker: v.address, amount: 2000n, arbiter: registry });
    await directory.registerValidator(await validatorRecord(v), 2000n, "s-1", v.address);
    const unlock = wallet.unlockStake;
    wallet.unlockStake = async () => {
      throw new DirectoryError("unavailable", "the wallet is unavailable");
    };
    await rejectsWith(directory.unregisterValidator(v.address, v.address), "unavailable");
    assert.equal((await directory.getValidator(v.address))?.status, ValidatorStatus.INACTIVE);
    await rejectsWith(directory.releaseDueStakes(), "unavailable");

    wallet.unlockStake = unlock;
    const retried = await directory.unregisterValidator(v.address, v.address);
    assert.equal(retried.stakeAmount, "0");
    assert.equal(wallet.stake("s-1")?.state, "unlocked");
  });

  test("a wrong signature slashes the stake for the treasury; below the minimum the validator is out", async () => {
    directory = await open({ slashPerInvalidSignature: 600n });
    const v = generateKeyPair();
    wallet.lock({ stakeId: "s-1", staker: v.address, amount: 2000n, arbiter: registry });
    await directory.registerValidator(await validatorRecord(v), 2000n, "s-1", v.address);

    const slashed = await directory.reportValidatorEvent(v.address, "invalid_signature");
    assert.equal(slashed.status, ValidatorStatus.ACTIVE);
    assert.equal(slashed.stakeAmount, "1400");
    assert.equal(wallet.stake("s-1")?.amount, 1400n);
    const timeout = await directory.reportValidatorEvent(v.address, "timeout");
    assert.equal(timeout.stakeAmount, "1400", "only provable misbehaviour is slashed");

    const out = await directory.reportValidatorEvent(v.address, "invalid_signature");
    assert.equal(out.status, ValidatorStatus.SLASHED);
    assert.equal(wallet.stake("s-1")?.state, "unlocked", "the remaining 800 went back");
    assert.equal(out.stakeAmount, "0");
    await rejectsWith(
      directory.registerValidator(await validatorRecord(v, 2n), 2000n, "s-2", v.address),
      "permission_denied",
      /slashed/,
    );
  });

  test("without a wallet only unstaked validators register, and no minimum can be set", async () => {
    space += 1;
    const store = await openRegistryStore(backend, `vs${space}`);
    const bare = createDirectory({ store, clock: clock.now, powDifficulty: TEST_POW_DIFFICULTY });
    const v = generateKeyPair();
    const record = await validatorRecord(v);
    await rejectsWith(
      bare.registerValidator(record, 100n, "s-1", v.address),
      "failed_precondition",
      /no wallet/,
    );
    await rejectsWith(bare.registerValidator(record, 0n, "s-1", v.address), "invalid", /empty/);
    const info = await bare.registerValidator(record, 0n, "", v.address);
    assert.deepEqual([info.stakeAmount, info.stakeId], ["0", ""]);
    assert.equal(
      (await bare.unregisterValidator(v.address, v.address)).status,
      ValidatorStatus.INACTIVE,
    );
    assert.throws(
      () =>
        createDirectory({
          store,
          powDifficulty: TEST_POW_DIFFICULTY,
          minValidatorStake: 1n,
        }),
      /minimum validator stake needs/,
    );
  });
});
