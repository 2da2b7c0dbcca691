// Test-only helpers for the registry's domain and service tests: a store with every registry
// migration, a fake clock, and sealed node records.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { sealNodeRecord } from "@tessera/identity/node-record";
import {
  DeviceType,
  type NodeRecord,
  NodeRecordSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { type NonceStoreTables, nonceStoreMigrations, type Store } from "@tessera/store";
import type { StoreBackend } from "@tessera/store/testing";
import type { FeePaymentLedger, FeeTransfer } from "../subnets/fee-payments.js";
import { subnetMigrations } from "../subnets/migrations.js";
import type { SubnetTables } from "../subnets/tables.js";
import { DirectoryError } from "./errors.js";
import { registryMigrations } from "./migrations.js";
import type { StakeLedger, WalletStake } from "./stakes.js";
import type { RegistryTables } from "./tables.js";

/** Proof-of-work difficulty of the tests: cheap (about 256 hashes) but not zero. */
export const TEST_POW_DIFFICULTY = 8;

export type RegistryDb = RegistryTables & SubnetTables & NonceStoreTables;

/** Opens the registry's store (every migration) in `space` of the suite's backend. */
export function openRegistryStore(
  backend: StoreBackend,
  space?: string,
): Promise<Store<RegistryDb>> {
  return backend.open<RegistryDb>({
    migrations: { ...nonceStoreMigrations, ...registryMigrations, ...subnetMigrations },
    ...(space === undefined ? {} : { space }),
  });
}

/** A clock the test moves by hand. */
export interface FakeClock {
  readonly now: () => Date;
  advance(ms: number): void;
}

export function createFakeClock(start = new Date("2030-01-01T00:00:00Z")): FakeClock {
  let ms = start.getTime();
  return {
    now: () => new Date(ms),
    advance(delta) {
      ms += delta;
    },
  };
}

/** Fields of a node record to set, as protobuf-es init values. */
export type RecordFields = Exclude<MessageInitShape<typeof NodeRecordSchema>, NodeRecord>;

/** A filled-in, unsealed compute-node record for `keyPair`. */
export function sampleRecord(keyPair: KeyPair, fields: RecordFields = {}): NodeRecord {
  return create(NodeRecordSchema, {
    protocolVersion: { major: 1, minor: 0, patch: 0 },
    address: keyPair.address,
    publicKey: keyPair.publicKey,
    nodeType: NodeType.COMPUTE,
    name: "node",
    softwareVersion: "0.1.0",
    endpoint: { host: "10.0.0.7", port: 7000 },
    region: "eu-west",
    devices: [
      { deviceType: DeviceType.CPU, deviceName: "cpu", totalMemoryBytes: 16n * 1024n ** 3n },
    ],
    cpuCores: 8,
    ramTotalBytes: 16n * 1024n ** 3n,
    capabilities: ["inference"],
    runtimes: ["onnxruntime"],
    supportedFormats: ["onnx"],
    pricePerHour: "1000",
    maxConcurrentJobs: 2,
    sequence: 1n,
    issuedAt: timestampFromDate(new Date("2030-01-01T00:00:00Z")),
    ...fields,
  });
}

/** `sampleRecord(keyPair, fields)` with proof of work and signature. */
export function sealedRecord(
  keyPair: KeyPair,
  fields: RecordFields = {},
  difficulty = TEST_POW_DIFFICULTY,
): Promise<NodeRecord> {
  return sealNodeRecord(sampleRecord(keyPair, fields), keyPair, difficulty);
}

/** A new key pair and its sealed record. */
export async function newNode(
  fields: RecordFields = {},
): Promise<{ keyPair: KeyPair; record: NodeRecord }> {
  const keyPair = generateKeyPair();
  return { keyPair, record: await sealedRecord(keyPair, fields) };
}

/**
 * An in-memory stand-in for the wallet's stakes and transfers, for the domain's unit tests (the
 * real wallet is driven in wallet-integration.test.ts). Stakes and transfers are put in by hand.
 */
export interface MemoryWallet extends StakeLedger, FeePaymentLedger {
  /** Locks a stake as LockStake would. */
  lock(stake: { stakeId: string; staker: string; amount: bigint; arbiter: string }): void;
  /** Records a committed transfer. */
  pay(transfer: FeeTransfer): void;
  /** The stake as the wallet holds it now, or undefined. */
  stake(stakeId: string): WalletStake | undefined;
  /** Calls made so far, by method name. */
  readonly calls: Readonly<Record<string, number>>;
}

/** A new, empty {@link MemoryWallet}. */
export function createMemoryWallet(): MemoryWallet {
  const stakes = new Map<string, WalletStake>();
  const transfers: FeeTransfer[] = [];
  const slashes = new Set<string>();
  const calls: Record<string, number> = {};
  const count = (name: string) => {
    calls[name] = (calls[name] ?? 0) + 1;
  };
  const existing = (stakeId: string) => {
    const stake = stakes.get(stakeId);
    if (stake === undefined) throw new DirectoryError("not_found", `stake ${stakeId}`);
    return stake;
  };
  return {
    calls,
    lock({ stakeId, staker, amount, arbiter }) {
      stakes.set(stakeId, {
        stakeId,
        stakerAddress: staker,
        arbiterAddress: arbiter,
        amount,
        state: "locked",
      });
    },
    pay(transfer) {
      transfers.push(transfer);
    },
    stake: (stakeId) => stakes.get(stakeId),
    async getStake(stakeId) {
      count("getStake");
      return stakes.get(stakeId);
    },
    async unlockStake(stakeId) {
      count("unlockStake");
      const stake = existing(stakeId);
      if (stake.state === "slashed") throw new DirectoryError("failed_precondition", "slashed");
      const unlocked = { ...stake, amount: 0n, state: "unlocked" as const };
      stakes.set(stakeId, unlocked);
      return unlocked;
    },
    async slashStake(slash) {
      count("slashStake");
      const stake = existing(slash.stakeId);
      if (slashes.has(slash.slashId)) return stake;
      if (stake.state !== "locked") throw new DirectoryError("failed_precondition", stake.state);
      slashes.add(slash.slashId);
      const amount = stake.amount > slash.amount ? stake.amount - slash.amount : 0n;
      const after: WalletStake = { ...stake, amount, state: amount === 0n ? "slashed" : "locked" };
      stakes.set(slash.stakeId, after);
      return after;
    },
    async findTransfer(query) {
      count("findTransfer");
      return transfers.find(
        (t) =>
          t.transferId === query.transferId &&
          t.fromAddress === query.payer &&
          t.referenceId === query.referenceId,
      );
    },
  };
}
