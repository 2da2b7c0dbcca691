/**
 * One node's live state inside the scheduler: what it offers, what the scheduler reserved on it,
 * and the arithmetic that keeps reservations within its slots and memory. Memory is kept in plain
 * numbers of bytes (exact below 8 PiB; larger offers are capped there).
 */
import type { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { BucketTree } from "./bucket-tree.js";
import { SchedulerInputError } from "./errors.js";
import { HOST_POOL, poolOf } from "./pools.js";
import type { SchedulerNode } from "./scheduler-node.js";
import { nodeScore, type ScoreWeights } from "./score.js";

/** {@link NodeState.fit} result: the job fits in host RAM. */
export const FITS_HOST = -1;
/** {@link NodeState.fit} result: the job does not fit. */
export const NO_FIT = -2;

/** One device and the memory reserved on it. */
export interface DeviceState {
  readonly deviceType: DeviceType;
  readonly pool: number;
  readonly capacity: number;
  reserved: number;
}

/** One job's hold on a node: a slot plus `memory` bytes in `pool` (on `deviceIndex` for devices). */
export interface Reservation {
  readonly jobId: string;
  readonly pool: number;
  /** Index into the node's devices, -1 for host RAM (or when the device disappeared). */
  deviceIndex: number;
  readonly memory: number;
}

/** Where a node sits in one bucket's tree. */
export interface Membership {
  readonly tree: BucketTree<NodeState>;
  readonly slot: number;
  readonly pool: number;
}

/** A node's reservations and free capacity as reported by {@link Scheduler.node}. */
export interface SchedulerNodeState {
  readonly address: string;
  readonly online: boolean;
  readonly banned: boolean;
  readonly maxConcurrentJobs: number;
  /** Reservations plus running jobs the scheduler did not reserve. */
  readonly usedSlots: number;
  readonly ramAvailableBytes: bigint;
  /** Memory of reservations whose jobs the node does not yet report running. */
  readonly ramReservedBytes: bigint;
  readonly devices: readonly {
    readonly deviceType: DeviceType;
    readonly memoryBytes: bigint;
    readonly reservedBytes: bigint;
  }[];
  readonly reservations: readonly {
    readonly jobId: string;
    readonly deviceType: DeviceType | undefined;
    readonly deviceIndex: number;
    readonly memoryBytes: bigint;
  }[];
}

/** Bytes as a number, capped at the largest exact integer. */
export function bytesToNumber(bytes: bigint): number {
  return bytes > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(bytes);
}

/** The mutable state of one registered node. */
export class NodeState {
  readonly address: string;
  price = 0n;
  priceNumber = 0;
  reputation = 0;
  uptime = 0;
  maxSlots = 0;
  banned = false;
  online = true;
  reachable = false;
  runtimes: readonly string[] = [];
  /** Distinct pools of the node, host first. */
  pools: readonly number[] = [HOST_POOL];
  hostCapacity = 0;
  hostReserved = 0;
  devices: DeviceState[] = [];
  running: ReadonlySet<string> = new Set();
  readonly reservations = new Map<string, Reservation>();
  /** Running jobs the scheduler holds no reservation for; each takes a slot. */
  foreignRunning = 0;
  memberships: Membership[] = [];

  constructor(node: SchedulerNode) {
    this.address = node.address;
    this.apply(node);
  }

  /**
   * Takes a new description of the node, keeping its reservations (re-counted against the new
   * offer; a reservation whose device is gone moves to the freest device of its kind).
   * @throws SchedulerInputError when a field is out of range.
   */
  apply(node: SchedulerNode): void {
    validate(node);
    this.price = node.pricePerHour;
    this.priceNumber = Number(node.pricePerHour);
    this.reputation = node.reputation;
    this.uptime = node.uptimeRatio;
    this.maxSlots = node.maxConcurrentJobs;
    this.banned = node.banned ?? false;
    if (node.online !== undefined) this.online = node.online;
    this.reachable = node.reachable ?? false;
    this.runtimes = [...new Set(node.runtimes.filter((runtime) => runtime !== ""))];
    this.hostCapacity = bytesToNumber(node.ramAvailableBytes);
    this.devices = node.devices.map((device) => ({
      deviceType: device.deviceType,
      pool: poolOf(device.deviceType),
      capacity: bytesToNumber(device.memoryBytes),
      reserved: 0,
    }));
    this.pools = [
      HOST_POOL,
      ...new Set(this.devices.map((d) => d.pool).filter((p) => p !== HOST_POOL)),
    ];
    this.running = new Set(node.runningJobIds ?? []);
    this.recount();
  }

  /** Slots taken: reservations plus running jobs the scheduler did not reserve. */
  get usedSlots(): number {
    return this.reservations.size + this.foreignRunning;
  }

  /** Online, not banned and with a free slot: the node can take a job now. */
  get active(): boolean {
    return this.online && !this.banned && this.usedSlots < this.maxSlots;
  }

  /** Whether the node has memory of `pool` at all (host RAM always). */
  hasPool(pool: number): boolean {
    return pool === HOST_POOL || this.pools.includes(pool);
  }

  /** Largest free memory a single job can get in `pool`, in bytes; -1 without such a device. */
  freeIn(pool: number): number {
    if (pool === HOST_POOL) return this.hostCapacity - this.hostReserved;
    let best = -1;
    for (const device of this.devices) {
      if (device.pool === pool) best = Math.max(best, device.capacity - device.reserved);
    }
    return best;
  }

  /** Largest memory a single job could ever get in `pool` (nothing reserved), in bytes; -1 without such a device. */
  capacityIn(pool: number): number {
    if (pool === HOST_POOL) return this.hostCapacity;
    let best = -1;
    for (const device of this.devices) {
      if (device.pool === pool) best = Math.max(best, device.capacity);
    }
    return best;
  }

  /** Free share of the memory the node offers in `pool`, in [0, 1] (0 when it offers none). */
  freeFractionIn(pool: number): number {
    let capacity = 0;
    let free = 0;
    if (pool === HOST_POOL) {
      capacity = this.hostCapacity;
      free = this.hostCapacity - this.hostReserved;
    } else {
      for (const device of this.devices) {
        if (device.pool !== pool) continue;
        capacity += device.capacity;
        free += Math.max(0, device.capacity - device.reserved);
      }
    }
    return capacity > 0 ? Math.max(0, free) / capacity : 0;
  }

  /**
   * Where a job needing `memory` bytes of `pool` fits now: {@link FITS_HOST}, the index of the
   * device with the least free memory that still fits (best fit keeps large devices free for large
   * jobs), or {@link NO_FIT}.
   */
  fit(pool: number, memory: number): number {
    if (pool === HOST_POOL)
      return this.hostCapacity - this.hostReserved >= memory ? FITS_HOST : NO_FIT;
    let chosen = NO_FIT;
    let chosenFree = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.devices.length; i++) {
      const device = this.devices[i] as DeviceState;
      if (device.pool !== pool) continue;
      const free = device.capacity - device.reserved;
      if (free >= memory && free < chosenFree) {
        chosen = i;
        chosenFree = free;
      }
    }
    return chosen;
  }

  /**
   * Whether the node asks more than `max` per hour. `maxNumber` is Number(max): numbers are
   * compared first (Number() is monotonic, so only equal numbers need the slower bigint compare).
   */
  asksMoreThan(max: bigint, maxNumber: number): boolean {
    if (this.priceNumber !== maxNumber) return this.priceNumber > maxNumber;
    return this.price > max;
  }

  /** Whether the node holds or runs job `jobId` already. */
  holds(jobId: string): boolean {
    return this.reservations.has(jobId) || this.running.has(jobId);
  }

  /** Takes a slot and `memory` bytes of `pool` (on device `deviceIndex`, -1 for host) for `jobId`. */
  reserve(jobId: string, pool: number, deviceIndex: number, memory: number): void {
    this.reservations.set(jobId, { jobId, pool, deviceIndex, memory });
    if (this.running.has(jobId)) {
      // The node already counts it: it stops being foreign and its memory is not taken twice.
      this.foreignRunning--;
      return;
    }
    this.charge(pool, deviceIndex, memory);
  }

  /**
   * Gives back `jobId`'s slot and memory; false when the node holds no reservation for it.
   * A job the node still reports running keeps its slot (as a foreign job) until the next report.
   */
  release(jobId: string): boolean {
    const reservation = this.reservations.get(jobId);
    if (reservation === undefined) return false;
    this.reservations.delete(jobId);
    if (this.running.has(jobId)) {
      this.foreignRunning++;
    } else {
      this.charge(reservation.pool, reservation.deviceIndex, -reservation.memory);
    }
    return true;
  }

  /** The node's score for a job using `pool` (see score.ts). */
  scoreIn(pool: number, weights: ScoreWeights, referencePricePerHour: number): number {
    const free =
      this.maxSlots > 0 ? Math.max(0, this.maxSlots - this.usedSlots) / this.maxSlots : 0;
    return nodeScore(weights, referencePricePerHour, {
      reputation: this.reputation,
      uptimeRatio: this.uptime,
      freeSlotFraction: free,
      freeMemoryFraction: this.freeFractionIn(pool),
      pricePerHour: this.priceNumber,
    });
  }

  /** A copy of the node's accounting for callers and tests. */
  snapshot(): SchedulerNodeState {
    return {
      address: this.address,
      online: this.online,
      banned: this.banned,
      maxConcurrentJobs: this.maxSlots,
      usedSlots: this.usedSlots,
      ramAvailableBytes: BigInt(this.hostCapacity),
      ramReservedBytes: BigInt(this.hostReserved),
      devices: this.devices.map((device) => ({
        deviceType: device.deviceType,
        memoryBytes: BigInt(device.capacity),
        reservedBytes: BigInt(device.reserved),
      })),
      reservations: [...this.reservations.values()].map((r) => ({
        jobId: r.jobId,
        deviceType: r.deviceIndex >= 0 ? this.devices[r.deviceIndex]?.deviceType : undefined,
        deviceIndex: r.deviceIndex,
        memoryBytes: BigInt(r.memory),
      })),
    };
  }

  private charge(pool: number, deviceIndex: number, memory: number): void {
    if (pool === HOST_POOL) {
      this.hostReserved += memory;
      return;
    }
    const device = this.devices[deviceIndex];
    if (device !== undefined) device.reserved += memory;
  }

  private recount(): void {
    this.hostReserved = 0;
    let foreign = 0;
    for (const jobId of this.running) if (!this.reservations.has(jobId)) foreign++;
    this.foreignRunning = foreign;
    const homeless: Reservation[] = [];
    for (const reservation of this.reservations.values()) {
      if (reservation.pool !== HOST_POOL) {
        const device = this.devices[reservation.deviceIndex];
        if (device === undefined || device.pool !== reservation.pool) {
          homeless.push(reservation);
          continue;
        }
      }
      if (!this.running.has(reservation.jobId)) {
        this.charge(reservation.pool, reservation.deviceIndex, reservation.memory);
      }
    }
    for (const reservation of homeless) {
      reservation.deviceIndex = this.freestDevice(reservation.pool);
      if (!this.running.has(reservation.jobId)) {
        this.charge(reservation.pool, reservation.deviceIndex, reservation.memory);
      }
    }
  }

  private freestDevice(pool: number): number {
    let chosen = -1;
    let chosenFree = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < this.devices.length; i++) {
      const device = this.devices[i] as DeviceState;
      if (device.pool === pool && device.capacity - device.reserved > chosenFree) {
        chosen = i;
        chosenFree = device.capacity - device.reserved;
      }
    }
    return chosen;
  }
}

function validate(node: SchedulerNode): void {
  if (typeof node.address !== "string" || node.address === "") {
    throw new SchedulerInputError("address", "must not be empty");
  }
  if (!(node.reputation >= 0 && node.reputation <= 1)) {
    throw new SchedulerInputError("reputation", `${node.reputation} is not in [0, 1]`);
  }
  if (!(node.uptimeRatio >= 0 && node.uptimeRatio <= 1)) {
    throw new SchedulerInputError("uptime_ratio", `${node.uptimeRatio} is not in [0, 1]`);
  }
  if (!(Number.isInteger(node.maxConcurrentJobs) && node.maxConcurrentJobs >= 0)) {
    throw new SchedulerInputError(
      "max_concurrent_jobs",
      `${node.maxConcurrentJobs} is not a whole number >= 0`,
    );
  }
  if (node.pricePerHour < 0n) throw new SchedulerInputError("price_per_hour", "must be >= 0");
  if (node.ramAvailableBytes < 0n) {
    throw new SchedulerInputError("ram_available_bytes", "must be >= 0");
  }
  for (const device of node.devices) {
    if (device.memoryBytes < 0n) throw new SchedulerInputError("devices", "memory must be >= 0");
  }
}
