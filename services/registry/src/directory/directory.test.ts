import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { solveNodeRecordPow } from "@tessera/identity/node-record";
import {
  DeviceType,
  NodeLoadSchema,
  NodeType,
  ProtocolVersionSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  NodeEventKind,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import type { Store } from "@tessera/store";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import { createDirectory, type Directory, type DirectoryOptions } from "./directory.js";
import { DirectoryError, type DirectoryErrorKind } from "./errors.js";
import {
  createFakeClock,
  createMemoryWallet,
  type FakeClock,
  newNode,
  openRegistryStore,
  type RecordFields,
  type RegistryDb,
  sealedRecord,
  TEST_POW_DIFFICULTY,
} from "./test-fixtures.js";

const HOUR = 3_600_000;
const TIMEOUT_MS = 30_000;

/** Asserts that `promise` rejects with a DirectoryError of `kind` whose message matches. */
async function rejectsWith(
  promise: Promise<unknown>,
  kind: DirectoryErrorKind,
  message?: RegExp,
): Promise<DirectoryError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof DirectoryError, `expected a DirectoryError, got ${String(caught)}`);
  assert.equal(caught.kind, kind, caught.message);
  if (message !== undefined) assert.match(caught.message, message);
  return caught;
}

await describeEachStore("directory", (backend: StoreBackend) => {
  let clock: FakeClock;
  let directory: Directory;
  const reporter = generateKeyPair().address;

  let lastStore: Store<RegistryDb> | undefined;
  async function open(
    overrides: Partial<DirectoryOptions<RegistryDb>> = {},
    space?: string,
  ): Promise<Directory> {
    const store = await openRegistryStore(backend, space);
    lastStore = store;
    return createDirectory({
      store,
      clock: clock.now,
      powDifficulty: TEST_POW_DIFFICULTY,
      heartbeatIntervalMs: 10_000,
      heartbeatTimeoutMs: TIMEOUT_MS,
      strikesPerBan: 2,
      trustedReporters: [reporter],
      ...overrides,
    });
  }

  let space = 0;
  beforeEach(async () => {
    clock = createFakeClock();
    // A fresh database per test: directories do not see each other's nodes.
    space += 1;
    directory = await open({}, `t${space}`);
  });

  async function report(address: string, kind: NodeEventKind, eventId: string, extra = {}) {
    return directory.reportEvent(address, { eventId, reporter, kind, ...extra });
  }

  test("registers a node from its signed record with proof of work", async () => {
    const { keyPair, record } = await newNode();
    const entry = await directory.registerNode(record, keyPair.address);
    assert.equal(entry.record?.address, keyPair.address);
    assert.equal(entry.standing?.reputation, 0.5);
    assert.equal(entry.standing?.online, false, "offline until the first heartbeat");
    assert.equal(entry.registeredAt && timestampMs(entry.registeredAt), clock.now().getTime());
    const read = await directory.getEntry(keyPair.address);
    assert.deepEqual(read?.record, record);
    assert.equal(await directory.getEntry(generateKeyPair().address), undefined);
  });

  test("refuses proof of work below the registry's difficulty, naming it", async () => {
    const keyPair = generateKeyPair();
    const weak = await sealedRecord(keyPair, {}, TEST_POW_DIFFICULTY - 4);
    await rejectsWith(
      directory.registerNode(weak, keyPair.address),
      "invalid",
      /difficulty 4 is below the required 8/,
    );
    const forged = { ...(await sealedRecord(keyPair)), powNonce: 12_345_678n };
    await rejectsWith(directory.acceptRecord(forged), "invalid", /proof of work/);
    assert.equal(await directory.getEntry(keyPair.address), undefined, "nothing was stored");
  });

  test("refuses a record whose signature does not verify, or whose address is not its key's", async () => {
    const keyPair = generateKeyPair();
    const sealed = await sealedRecord(keyPair);
    // The proof of work is redone for the changed field, the old signature kept.
    const resolved = await solveNodeRecordPow({ ...sealed, name: "evil" }, TEST_POW_DIFFICULTY);
    const badSignature = { ...resolved, signature: sealed.signature };
    await rejectsWith(directory.acceptRecord(badSignature), "bad_signature", /signature/);
    const unsigned = await solveNodeRecordPow(sealed, TEST_POW_DIFFICULTY);
    await rejectsWith(directory.acceptRecord(unsigned), "bad_signature", /missing/);
    const other = generateKeyPair();
    const wrongAddress = { ...sealed, address: other.address };
    await rejectsWith(directory.acceptRecord(wrongAddress), "invalid", /address/);
    await rejectsWith(
      directory.acceptRecord({
        ...sealed,
        protocolVersion: create(ProtocolVersionSchema, { major: 2 }),
      }),
      "failed_precondition",
      /2\.0\.0.*1\.0\.0/,
    );
  });

  test("only the record's own key may register it", async () => {
    const { record } = await newNode();
    await rejectsWith(
      directory.registerNode(record, generateKeyPair().address),
      "permission_denied",
      /not the record's address/,
    );
  });

  test("the newest sequence wins; the same record is idempotent; older or forked ones are refused", async () => {
    const keyPair = generateKeyPair();
    const v5 = await sealedRecord(keyPair, { sequence: 5n, name: "five" });
    const first = await directory.registerNode(v5, keyPair.address);
    clock.advance(1000);
    const again = await directory.registerNode(v5, keyPair.address);
    assert.deepEqual(again.updatedAt, first.updatedAt, "the same record changes nothing");
    const v4 = await sealedRecord(keyPair, { sequence: 4n });
    await rejectsWith(directory.registerNode(v4, keyPair.address), "stale", /older/);
    const fork = await sealedRecord(keyPair, { sequence: 5n, name: "fork" });
    await rejectsWith(directory.registerNode(fork, keyPair.address), "conflict", /sequence 5/);
    assert.equal(await directory.acceptRecord(v4), "stale");
    assert.equal(await directory.acceptRecord(fork), "stale");
    const v6 = await sealedRecord(keyPair, { sequence: 6n, name: "six" });
    assert.equal(await directory.acceptRecord(v6), "accepted");
    const entry = await directory.getEntry(keyPair.address);
    assert.equal(entry?.record?.name, "six");
    assert.deepEqual(entry?.registeredAt, first.registeredAt, "first registration time is kept");
    assert.deepEqual(
      (await directory.allRecords()).map((r) => r.name),
      ["six"],
    );
  });

  test("heartbeats keep a node online; silence beyond the timeout takes it offline", async () => {
    const { keyPair, record } = await newNode();
    await rejectsWith(
      directory.heartbeat(keyPair.address, undefined, keyPair.address),
      "not_found",
    );
    await directory.registerNode(record, keyPair.address);
    await rejectsWith(
      directory.heartbeat(keyPair.address, undefined, generateKeyPair().address),
      "permission_denied",
    );
    const load = create(NodeLoadSchema, { freeSlots: 3, cpuUtilization: 0.25 });
    const standing = await directory.heartbeat(keyPair.address, load, keyPair.address);
    assert.equal(standing.online, true);
    assert.equal((await directory.getEntry(keyPair.address))?.load?.freeSlots, 3);

    clock.advance(TIMEOUT_MS);
    assert.equal((await directory.getEntry(keyPair.address))?.standing?.online, true);
    assert.deepEqual(await directory.markOffline(), []);
    clock.advance(1);
    assert.equal(
      (await directory.getEntry(keyPair.address))?.standing?.online,
      false,
      "offline as soon as the timeout passes, sweep or not",
    );
    assert.deepEqual(await directory.markOffline(), [keyPair.address]);
    assert.deepEqual(await directory.markOffline(), [], "the sweep closes a session once");

    clock.advance(TIMEOUT_MS);
    const back = await directory.heartbeat(keyPair.address, load, keyPair.address);
    assert.equal(back.online, true);
    // Online for 30 s out of 60 s since registration.
    assert.ok(Math.abs(back.uptimeRatio - 0.5) < 0.01, `uptime ${back.uptimeRatio}`);
  });

  test("only the node itself deregisters it; the tombstone keeps old records out", async () => {
    const keyPair = generateKeyPair();
    const v3 = await sealedRecord(keyPair, { sequence: 3n });
    await directory.registerNode(v3, keyPair.address);
    await report(keyPair.address, NodeEventKind.VALIDATION_FAILED, "strike-1");
    await rejectsWith(
      directory.deregister(keyPair.address, generateKeyPair().address),
      "permission_denied",
      /only the node itself/,
    );
    assert.ok(await directory.getEntry(keyPair.address), "still registered");

    const removedAt = await directory.deregister(keyPair.address, keyPair.address, "maintenance");
    assert.equal(removedAt.getTime(), clock.now().getTime());
    assert.equal(await directory.getEntry(keyPair.address), undefined);
    assert.deepEqual(await directory.allRecords(), []);
    assert.deepEqual(await directory.findNodes({}), []);
    await rejectsWith(directory.heartbeat(keyPair.address, undefined), "not_found");
    clock.advance(5000);
    const again = await directory.deregister(keyPair.address, keyPair.address);
    assert.equal(again.getTime(), removedAt.getTime(), "the first removal's time");

    assert.equal(await directory.acceptRecord(v3), "stale", "gossip cannot bring it back");
    await rejectsWith(directory.registerNode(v3, keyPair.address), "stale", /higher sequence/);
    const v4 = await sealedRecord(keyPair, { sequence: 4n });
    const back = await directory.registerNode(v4, keyPair.address);
    assert.equal(back.standing?.strikes, 1, "leaving does not clear strikes");
  });

  test("discovery filters on type, device, runtime, model, subnet, capability, liveness and reputation", async () => {
    const cpu = await newNode({ name: "cpu" });
    const gpu = await newNode({
      name: "gpu",
      devices: [
        { deviceType: DeviceType.CPU, totalMemoryBytes: 8n << 30n },
        { deviceType: DeviceType.CUDA, totalMemoryBytes: 40n << 30n },
      ],
      runtimes: ["onnxruntime", "tfjs"],
      capabilities: ["training", "inference"],
      models: [{ modelId: "resnet50" }],
      subnetId: 7n,
    });
    const small = await newNode({
      name: "small-gpu",
      devices: [{ deviceType: DeviceType.CUDA, totalMemoryBytes: 8n << 30n }],
      runtimes: ["tfjs"],
    });
    const gateway = await newNode({ name: "gateway", nodeType: NodeType.GATEWAY });
    for (const node of [cpu, gpu, small, gateway]) {
      await directory.registerNode(node.record, node.keyPair.address);
    }
    await directory.heartbeat(cpu.keyPair.address, create(NodeLoadSchema, { freeSlots: 1 }));
    await directory.heartbeat(gpu.keyPair.address, create(NodeLoadSchema, { freeSlots: 4 }));
    await report(small.keyPair.address, NodeEventKind.VALIDATION_PASSED, "good");

    const names = async (filter: Parameters<Directory["findNodes"]>[0]) =>
      (await directory.findNodes(filter)).map((entry) => entry.record?.name);

    // Online first (more free slots first among equals), then by reputation.
    assert.deepEqual(await names({}), ["gpu", "cpu", "small-gpu", "gateway"]);
    assert.deepEqual(await names({ nodeType: NodeType.GATEWAY }), ["gateway"]);
    assert.deepEqual(await names({ deviceType: DeviceType.CUDA }), ["gpu", "small-gpu"]);
    assert.deepEqual(
      await names({ deviceType: DeviceType.CUDA, minDeviceMemoryBytes: 16n << 30n }),
      ["gpu"],
    );
    assert.deepEqual(
      await names({ deviceType: DeviceType.CPU, minDeviceMemoryBytes: 16n << 30n }),
      ["cpu", "gateway"],
      "the same device must meet type and memory",
    );
    assert.deepEqual(await names({ runtime: "tfjs" }), ["gpu", "small-gpu"]);
    assert.deepEqual(await names({ modelId: "resnet50" }), ["gpu"]);
    assert.deepEqual(await names({ subnetId: 7n }), ["gpu"]);
    assert.deepEqual(await names({ subnetId: 0n }), ["cpu", "small-gpu", "gateway"]);
    assert.deepEqual(await names({ capability: "training" }), ["gpu"]);
    assert.deepEqual(await names({ onlineOnly: true }), ["gpu", "cpu"]);
    assert.deepEqual(await names({ minReputation: 0.51 }), ["small-gpu"]);
    assert.deepEqual(await names({ maxResults: 2 }), ["gpu", "cpu"]);

    clock.advance(TIMEOUT_MS + 1);
    assert.deepEqual(await names({ onlineOnly: true }), [], "silent nodes drop out");
  });

  test("reputation moves with reported events, and only known reporters may report", async () => {
    const { keyPair, record } = await newNode();
    await directory.registerNode(record, keyPair.address);
    const stranger = generateKeyPair().address;
    await rejectsWith(
      directory.reportEvent(keyPair.address, {
        eventId: "e",
        reporter: stranger,
        kind: NodeEventKind.VALIDATION_PASSED,
      }),
      "permission_denied",
    );
    await rejectsWith(
      directory.reportEvent(keyPair.address, {
        eventId: "e",
        reporter: keyPair.address,
        kind: NodeEventKind.JOB_COMPLETED,
      }),
      "permission_denied",
      /itself/,
    );
    await rejectsWith(
      report(generateKeyPair().address, NodeEventKind.VALIDATION_PASSED, "x"),
      "not_found",
    );
    await rejectsWith(report(keyPair.address, NodeEventKind.UNSPECIFIED, "x"), "invalid");

    const passed = await report(keyPair.address, NodeEventKind.VALIDATION_PASSED, "p1");
    assert.ok(passed.reputation > 0.5);
    const retried = await report(keyPair.address, NodeEventKind.VALIDATION_PASSED, "p1");
    assert.equal(retried.reputation, passed.reputation, "a repeated event id applies once");
    await rejectsWith(
      report(keyPair.address, NodeEventKind.VALIDATION_FAILED, "p1"),
      "conflict",
      /already reported/,
    );
    const done = await report(keyPair.address, NodeEventKind.JOB_COMPLETED, "j1", {
      computeTimeMs: 90_500n,
    });
    assert.equal(done.jobsCompleted, 1n);
    assert.equal(done.computeSeconds, 90n);
    const timedOut = await report(keyPair.address, NodeEventKind.VALIDATION_TIMED_OUT, "t1");
    assert.ok(timedOut.reputation < done.reputation);
    assert.equal(timedOut.strikes, 0, "a timeout is not a strike");

    const known = generateKeyPair().address;
    const hooked = await open(
      { isKnownReporter: async (address) => address === known },
      `t${space}`,
    );
    const viaHook = await hooked.reportEvent(keyPair.address, {
      eventId: "h1",
      reporter: known,
      kind: NodeEventKind.VALIDATION_PASSED,
    });
    assert.ok(viaHook.reputation > timedOut.reputation);
  });

  test("repeated strikes ban a node for growing periods, and a banned node is refused", async () => {
    const keyPair = generateKeyPair();
    await directory.registerNode(await sealedRecord(keyPair, { sequence: 1n }), keyPair.address);
    await directory.heartbeat(keyPair.address, undefined, keyPair.address);
    const strike = (id: string) => report(keyPair.address, NodeEventKind.JOB_ABANDONED, id);

    const one = await strike("s1");
    assert.equal(one.strikes, 1);
    assert.equal(one.bannedUntil, undefined, "one strike is not a ban (2 per ban here)");
    const banned = await strike("s2");
    assert.equal(banned.strikes, 2);
    assert.equal(banned.online, false);
    const start = clock.now().getTime();
    assert.equal(banned.bannedUntil && timestampMs(banned.bannedUntil), start + 24 * HOUR);

    const refusal = await rejectsWith(
      directory.heartbeat(keyPair.address, undefined, keyPair.address),
      "banned",
      /banned until/,
    );
    assert.equal(refusal.bannedUntil?.getTime(), start + 24 * HOUR);
    const newer = await sealedRecord(keyPair, { sequence: 2n });
    await rejectsWith(directory.registerNode(newer, keyPair.address), "banned");
    await rejectsWith(directory.acceptRecord(newer), "banned");
    assert.equal(await directory.callerStanding(keyPair.address), "blacklisted");
    assert.deepEqual(await directory.findNodes({ onlineOnly: true }), []);

    clock.advance(24 * HOUR);
    assert.equal(await directory.callerStanding(keyPair.address), "ok");
    assert.equal((await directory.heartbeat(keyPair.address, undefined)).online, true);

    const periods: number[] = [];
    for (const id of ["s3", "s4", "s5", "s6", "s7", "s8"]) {
      const standing = await strike(id);
      if (standing.bannedUntil !== undefined && standing.strikes % 2 === 0) {
        periods.push(timestampMs(standing.bannedUntil) - clock.now().getTime());
        clock.advance(200 * HOUR);
      }
    }
    assert.deepEqual(periods, [48 * HOUR, 168 * HOUR, 168 * HOUR]);
  });

  test("validators register with a validator record and a stake, and only they unregister themselves", async () => {
    const wallet = createMemoryWallet();
    const arbiter = generateKeyPair().address;
    const validatorDirectory = await open(
      {
        minValidatorStake: 100n,
        validatorStakes: { ledger: wallet, arbiterAddress: arbiter, slashBeneficiary: arbiter },
      },
      `t${space}`,
    );
    const keys = [generateKeyPair(), generateKeyPair(), generateKeyPair()].sort((a, b) =>
      a.address < b.address ? -1 : 1,
    );
    const stakes: [KeyPair | undefined, string, bigint][] = [
      [keys[0], "stake-a", 150n],
      [keys[1], "stake-b", 100n],
      [keys[2], "stake-c", 100n],
      [keys[1], "stake-b2", 300n],
    ];
    for (const [key, stakeId, amount] of stakes) {
      wallet.lock({ stakeId, staker: key?.address ?? "", amount, arbiter });
    }
    const validatorRecord = (keyPair: KeyPair, fields: RecordFields = {}) =>
      sealedRecord(keyPair, {
        nodeType: NodeType.VALIDATOR,
        endpoint: { url: "http://validator:7003" },
        ...fields,
      });
    const [a, b, c] = keys as [KeyPair, KeyPair, KeyPair];
    const recordA = await validatorRecord(a);

    await rejectsWith(
      validatorDirectory.registerValidator(await sealedRecord(a), 100n, "stake-a", a.address),
      "invalid",
      /VALIDATOR/,
    );
    await rejectsWith(
      validatorDirectory.registerValidator(recordA, 99n, "stake-a", a.address),
      "invalid",
      /below the registry's minimum 100/,
    );
    await rejectsWith(
      validatorDirectory.registerValidator(recordA, "1e3", "stake-a", a.address),
      "invalid",
      /decimal/,
    );
    await rejectsWith(
      validatorDirectory.registerValidator(recordA, 100n, "stake-a", b.address),
      "permission_denied",
    );

    const info = await validatorDirectory.registerValidator(recordA, "150", "stake-a", a.address);
    assert.equal(info.status, ValidatorStatus.ACTIVE);
    assert.equal(info.stakeAmount, "150");
    assert.equal(info.reputation, 0.5);
    assert.deepEqual(info.publicKey, a.publicKey);
    assert.equal(info.endpoint?.url, "http://validator:7003");
    assert.equal(
      (await validatorDirectory.getEntry(a.address))?.record?.nodeType,
      NodeType.VALIDATOR,
      "the validator's record enters the directory",
    );
    const same = await validatorDirectory.registerValidator(recordA, 150n, "stake-a", a.address);
    assert.deepEqual(same, info, "idempotent for the same record and stake");
    await rejectsWith(
      validatorDirectory.registerValidator(recordA, 150n, "stake-other", a.address),
      "conflict",
      /another stake/,
    );
    await validatorDirectory.registerValidator(await validatorRecord(b), 100n, "stake-b");
    await validatorDirectory.registerValidator(await validatorRecord(c), 100n, "stake-c");

    await rejectsWith(
      validatorDirectory.unregisterValidator(a.address, b.address),
      "permission_denied",
    );
    const gone = await validatorDirectory.unregisterValidator(b.address, b.address, "bye");
    assert.equal(gone.status, ValidatorStatus.INACTIVE);
    assert.equal(gone.stakeAmount, "0", "no approval is open: the stake is returned at once");
    assert.equal(wallet.stake("stake-b")?.state, "unlocked");
    assert.deepEqual(
      await validatorDirectory.unregisterValidator(b.address, b.address),
      gone,
      "idempotent",
    );
    assert.deepEqual(
      (await validatorDirectory.listValidators({ status: ValidatorStatus.ACTIVE })).map(
        (v) => v.address,
      ),
      [a.address, c.address],
    );

    const page1 = await validatorDirectory.listValidatorPage({ pageSize: 2 });
    assert.deepEqual(
      page1.validators.map((v) => v.address),
      [a.address, b.address],
    );
    assert.notEqual(page1.nextPageToken, "");
    const page2 = await validatorDirectory.listValidatorPage({
      pageSize: 2,
      pageToken: page1.nextPageToken,
    });
    assert.deepEqual(
      page2.validators.map((v) => v.address),
      [c.address],
    );
    assert.equal(page2.nextPageToken, "");
    await rejectsWith(
      validatorDirectory.listValidatorPage({
        status: ValidatorStatus.ACTIVE,
        pageToken: page1.nextPageToken,
      }),
      "invalid",
      /other filters/,
    );

    const slower = await validatorDirectory.reportValidatorEvent(a.address, "timeout");
    assert.ok(slower.reputation < 0.5);
    const worse = await validatorDirectory.reportValidatorEvent(a.address, "invalid_signature");
    assert.ok(worse.reputation < slower.reputation);
    const better = await validatorDirectory.reportValidatorEvent(a.address, "ok");
    assert.ok(better.reputation > worse.reputation);
    await rejectsWith(
      validatorDirectory.reportValidatorEvent(generateKeyPair().address, "ok"),
      "not_found",
    );

    // An active validator may report node events.
    const { keyPair, record } = await newNode();
    await validatorDirectory.registerNode(record, keyPair.address);
    const standing = await validatorDirectory.reportEvent(keyPair.address, {
      eventId: "v1",
      reporter: c.address,
      kind: NodeEventKind.VALIDATION_PASSED,
    });
    assert.ok(standing.reputation > 0.5);
    await rejectsWith(
      validatorDirectory.reportEvent(keyPair.address, {
        eventId: "v2",
        reporter: gone.address,
        kind: NodeEventKind.VALIDATION_PASSED,
      }),
      "permission_denied",
    );
    const back = await validatorDirectory.registerValidator(
      await validatorRecord(b, { sequence: 2n }),
      300n,
      "stake-b2",
      b.address,
    );
    assert.equal(back.status, ValidatorStatus.ACTIVE);
    assert.equal(back.stakeId, "stake-b2");
  });

  test("the directory survives a restart", async () => {
    const { keyPair, record } = await newNode();
    await directory.registerNode(record, keyPair.address);
    await report(keyPair.address, NodeEventKind.VALIDATION_FAILED, "f1");
    await lastStore?.close();
    const reopened = await open({}, `t${space}`);
    const entry = await reopened.getEntry(keyPair.address);
    assert.deepEqual(entry?.record, record);
    assert.equal(entry?.standing?.strikes, 1);
  });

  test("concurrent registrations of one new node store it once", async () => {
    const { keyPair, record } = await newNode();
    const results = await Promise.all(
      Array.from({ length: 8 }, () => directory.registerNode(record, keyPair.address)),
    );
    assert.equal(new Set(results.map((entry) => entry.record?.address)).size, 1);
    assert.equal((await directory.allRecords()).length, 1);
  });
});
