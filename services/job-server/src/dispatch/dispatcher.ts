/**
 * The scheduling loop of one job-server replica: it places queued jobs on the nodes connected to
 * this replica (through the in-memory scheduler, ../scheduler), leases each placed job in the
 * database (the claim re-checks the node's capacity and skips jobs another replica holds, so
 * nothing is over-committed or leased twice) and pushes the Assignment over the node's stream at
 * once. It wakes on every change that can make a placement possible (a submit, a requeue, a node
 * connecting or freeing a slot) and polls as well, for changes made by other replicas.
 *
 * Paid jobs are leased first and then routed by the validators (the registry's preprocessing
 * approval for that node); the assignment carries the approval. A job nobody can serve stays
 * QUEUED with the scheduler's reason as its status message.
 */
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { fromHex } from "@tessera/identity/hash";
import { JobState } from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  WorkDescriptionSchema,
  WorkKind,
} from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import type { Logger } from "@tessera/runtime";
import type { RegistryPort } from "@tessera/sdk/peer-clients";
import { PeerError } from "@tessera/sdk/peer-error";
import type { JobQueue } from "../jobs/job-queue.js";
import { approvalOf, isPaid, isTerminal, type JobRow, specOf } from "../jobs/job-row.js";
import type { QueueChanges } from "../jobs/queue-core.js";
import type { LeaseBook } from "../leases/lease-book.js";
import type { AssignmentHub } from "../nodes/assignment-hub.js";
import { type NodeEntry, standingOf } from "../nodes/node-book.js";
import type { SchedulerJob } from "../scheduler/job-requirements.js";
import { schedulerJobFrom } from "../scheduler/job-requirements.js";
import type { Scheduler } from "../scheduler/scheduler.js";
import { type SchedulerNode, schedulerNodeFrom } from "../scheduler/scheduler-node.js";

/** What {@link createDispatcher} needs. */
export interface DispatcherOptions {
  readonly scheduler: Scheduler;
  readonly queue: JobQueue;
  readonly leases: LeaseBook;
  readonly hub: AssignmentHub;
  /** The registry, for paid jobs' route approvals; undefined when not configured. */
  readonly registry: RegistryPort | undefined;
  readonly serverAddress: string;
  readonly logger: Logger;
  readonly now: () => number;
  /** How often queued jobs are looked at without a wake-up (other replicas' changes). */
  readonly pollMs: number;
  /** How long a paid job's claim waits for its approval (the registry's deadline). */
  readonly approvalTimeoutMs: number;
  /** How long a node that refused (or lost) a job is not offered it again. */
  readonly excludeMs: number;
  /** Active leases of a node, to reconcile the scheduler's reservations. */
  readonly activeJobIds: (node: string) => Promise<ReadonlySet<string>>;
  /**
   * A connected node as the database has it now: its heartbeats (and lease changes) may reach
   * other replicas, so the scheduler's view of the nodes connected here is refreshed from it.
   */
  readonly readNode: (address: string) => Promise<NodeEntry | undefined>;
  /** How often connected nodes are refreshed that way. */
  readonly refreshMs: number;
}

/** The scheduling loop; see the module comment. */
export interface Dispatcher {
  /** Runs a placement pass soon (coalesced). */
  wake(): void;
  /** Runs a placement pass now and resolves when it is done. */
  runPass(): Promise<void>;
  /** Jobs this process just queued: placed at once, without reading the queue. */
  offer(rows: readonly JobRow[]): void;
  /** A node can take jobs (its stream opened, or it pulls): tells the scheduler its latest state. */
  nodeAvailable(entry: NodeEntry): Promise<void>;
  /** A node reported a new load or record: updates the scheduler if it knows the node. */
  nodeUpdated(entry: NodeEntry): Promise<void>;
  /** A node can no longer take jobs here. */
  nodeUnavailable(address: string): void;
  /** Reacts to committed queue changes (frees slots, wakes, announces cancellations). */
  observe(changes: QueueChanges): void;
  /** Pushes revoked leases' cancellations to the connected nodes they concern. */
  deliverCancellations(): Promise<void>;
  /** Stops the poll timer and waits for the running pass and approvals. Safe twice. */
  close(): Promise<void>;
}

const PASS_BATCH = 100;
const MAX_CACHED_JOBS = 10_000;
/** Paid jobs need this much time left on a route approval to reuse it. */
const APPROVAL_MARGIN_MS = 5_000;

/** The dispatcher over the scheduler, queue and hub. */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const { scheduler, queue, leases, hub, registry, serverAddress, logger, now } = options;
  const jobCache = new Map<string, SchedulerJob>();
  const exclusions = new Map<string, Map<string, number>>();
  const claiming = new Set<string>();
  /** The scheduler's latest description of each node (kept to amend its running jobs). */
  const known = new Map<string, SchedulerNode>();
  const background = new Set<Promise<unknown>>();
  let passing: Promise<void> | undefined;
  /** Jobs just queued in this process, placed without reading the queue. */
  const offered = new Map<string, JobRow>();
  /** Whether the next pass must read the queue (other changes, other replicas, polls). */
  let fullPass = true;
  let again = false;
  let scheduled = false;
  let closed = false;

  const track = <T>(promise: Promise<T>) => {
    background.add(promise);
    void promise.finally(() => background.delete(promise));
    return promise;
  };

  const timer = setInterval(() => {
    if (scheduler.stats().onlineNodes > 0) dispatcher.wake();
  }, options.pollMs);
  timer.unref();
  let refreshing = false;
  const refreshTimer = setInterval(() => {
    if (refreshing || closed) return;
    refreshing = true;
    void track(
      (async () => {
        for (const address of hub.connected()) {
          const entry = await options.readNode(address);
          if (entry !== undefined && !closed) await dispatcher.nodeUpdated(entry);
        }
      })()
        .catch((error: unknown) => logger.warn({ err: error }, "refreshing nodes failed"))
        .finally(() => {
          refreshing = false;
        }),
    );
  }, options.refreshMs);
  refreshTimer.unref();

  function schedulerJobOf(row: JobRow): SchedulerJob {
    let job = jobCache.get(row.job_id);
    if (job === undefined) {
      if (jobCache.size >= MAX_CACHED_JOBS) jobCache.clear();
      job = schedulerJobFrom(specOf(row), new Date(row.queued_at_ms));
      jobCache.set(row.job_id, job);
    }
    return job;
  }

  function excluded(jobId: string): string[] {
    const byNode = exclusions.get(jobId);
    if (byNode === undefined) return [];
    const at = now();
    for (const [node, until] of byNode) if (until <= at) byNode.delete(node);
    if (byNode.size === 0) exclusions.delete(jobId);
    return [...byNode.keys()];
  }

  function exclude(jobId: string, node: string): void {
    let byNode = exclusions.get(jobId);
    if (byNode === undefined) {
      byNode = new Map();
      exclusions.set(jobId, byNode);
    }
    byNode.set(node, now() + options.excludeMs);
  }

  async function note(row: JobRow, reason: string): Promise<void> {
    if (row.error_message === reason) return;
    await queue.noteUnplaceable(row.job_id, reason);
  }

  function deliver(job: JobRow): void {
    if (job.lease_node === null) return;
    hub.push(job.lease_node, { case: "assignment", value: leases.assignmentOf(job) });
  }

  /** Gets the validators' route approval for a paid claim, then delivers it (or gives it back). */
  async function approveAndDeliver(job: JobRow, node: string, leaseId: string): Promise<void> {
    const spec = specOf(job);
    const reusable = approvalOf(job);
    let approval = reusable;
    if (approval?.terms?.route?.computeNodeAddress !== node) {
      if (registry === undefined) {
        await leases.abandonClaim(
          job.job_id,
          leaseId,
          "no registry is configured to approve paid jobs",
          now() + 60_000,
        );
        return;
      }
      const datasetDigest = spec.dataset?.digest ?? "";
      const work = create(WorkDescriptionSchema, {
        kind: WorkKind.BATCH_JOB,
        requestId: job.job_id,
        modelId: spec.model?.modelId ?? "",
        subnetId: 0n,
        clientAddress: job.payer_address,
        maxPrice: job.payment_amount,
        gatewayAddress: serverAddress,
        computeNodeAddress: node,
        inputHash: datasetDigest.startsWith("sha256:")
          ? fromHex(datasetDigest.slice(7))
          : new Uint8Array(0),
        inputSizeBytes: spec.dataset?.sizeBytes ?? 0n,
        estimatedComputeMs: spec.estimatedDurationMs,
      });
      try {
        approval = await registry.requestPreprocessing(work);
      } catch (error) {
        const peer = error instanceof PeerError ? error : undefined;
        const message = peer?.message ?? String(error);
        if (peer === undefined)
          logger.error({ err: error, jobId: job.job_id }, "route approval failed");
        const unreachable = peer === undefined || peer.kind === "unreachable";
        if (!unreachable) exclude(job.job_id, node);
        await leases.abandonClaim(
          job.job_id,
          leaseId,
          unreachable
            ? `the validators could not be asked to approve the route (${message})`
            : peer?.code === "already_exists"
              ? "waiting for the validators' earlier route approval of this job to expire"
              : `the validators did not approve the route to node ${node}: ${message}`,
          now() + (peer?.code === "already_exists" ? 30_000 : unreachable ? 5_000 : 0),
        );
        return;
      }
    }
    const approvedNode = approval?.terms?.route?.computeNodeAddress ?? "";
    if (approvedNode !== node) {
      // The registry still holds an unexpired approval for the earlier node, which it sees as
      // online: wait for it to notice that node is gone (or for the approval to expire).
      await leases.abandonClaim(
        job.job_id,
        leaseId,
        `the validators' route approval still names node ${approvedNode}, which the registry sees as online; retrying`,
        now() + 2_000,
      );
      return;
    }
    const attached = await leases.attachApproval(job.job_id, leaseId, approval);
    if (attached !== undefined) deliver(attached);
  }

  async function placeRow(row: JobRow): Promise<boolean> {
    let job: SchedulerJob;
    try {
      job = schedulerJobOf(row);
    } catch (error) {
      await note(row, `the job cannot be scheduled: ${(error as Error).message}`);
      return false;
    }
    const paid = isPaid(row);
    let only: string[] | undefined;
    if (paid) {
      const terms = approvalOf(row)?.terms;
      const expiresMs = terms?.expiresAt === undefined ? 0 : timestampMs(terms.expiresAt);
      const routed = terms?.route?.computeNodeAddress ?? "";
      // The approval pins the job to its route while that node is online here; once it is gone
      // the job is placed elsewhere and the registry replaces the approval of an offline node.
      if (expiresMs > now() && routed !== "" && scheduler.node(routed)?.online === true) {
        const needMs = Number(specOf(row).estimatedDurationMs) + APPROVAL_MARGIN_MS;
        if (expiresMs - now() < needMs) {
          await queue.defer(
            row.job_id,
            expiresMs + 1,
            `waiting for the validators' route approval to node ${routed} to expire (it is too short to run the job)`,
          );
          return false;
        }
        only = [routed];
      }
    }
    const placement = scheduler.place(job, {
      exclude: excluded(row.job_id),
      ...(only === undefined ? {} : { only }),
    });
    if (!placement.placed) {
      const online = scheduler.stats().onlineNodes;
      const reason =
        only !== undefined
          ? `the validators approved this job's route to node ${only[0]}, which cannot take it here now: ${placement.reason}`
          : placement.reason;
      // A node refused by the validators is excluded for a while; their reason, already in the
      // job's message, says more than "none of the online nodes may run it", so it stays.
      const refusedHere = excluded(row.job_id).length > 0 && row.error_message !== "";
      if (!refusedHere && (online > 0 || row.error_message === "")) await note(row, reason);
      return false;
    }
    const node = placement.address;
    claiming.add(row.job_id);
    try {
      const claim = await leases.claim(row.job_id, node, paid ? options.approvalTimeoutMs : 0);
      if (claim === undefined) {
        scheduler.release(node, row.job_id);
        return false;
      }
      if (paid) {
        track(
          approveAndDeliver(claim.job, node, claim.leaseId).catch((error: unknown) => {
            logger.error({ err: error, jobId: row.job_id }, "delivering a paid assignment failed");
          }),
        );
      } else {
        deliver(claim.job);
      }
      return true;
    } catch (error) {
      scheduler.release(node, row.job_id);
      throw error;
    } finally {
      claiming.delete(row.job_id);
    }
  }

  async function pass(): Promise<void> {
    if (closed) return;
    if (!fullPass && offered.size > 0) {
      // Only jobs just queued here changed: place them without reading the queue.
      const at = now();
      const fresh = [...offered.values()]
        .filter((row) => row.not_before_ms <= at)
        .sort((a, b) => b.priority - a.priority || a.queued_at_ms - b.queued_at_ms);
      offered.clear();
      for (const row of fresh) {
        if (closed) return;
        await placeRow(row);
      }
      return;
    }
    fullPass = false;
    offered.clear();
    const rows = await queue.placeable(PASS_BATCH);
    let placed = 0;
    for (const row of rows) {
      if (closed) return;
      if (await placeRow(row)) placed += 1;
    }
    if (rows.length === PASS_BATCH && placed > 0) {
      fullPass = true;
      again = true;
    }
  }

  /** Runs a pass soon (coalesced with other wake-ups of this turn). */
  function schedule(): void {
    if (closed) return;
    if (passing !== undefined) {
      again = true;
      return;
    }
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      void run();
    });
  }

  /** Runs passes until no wake-up arrived during the last one. */
  function run(): Promise<void> {
    if (passing !== undefined) {
      again = true;
      return passing;
    }
    passing = (async () => {
      try {
        do {
          again = false;
          await pass();
        } while (again && !closed);
      } catch (error) {
        logger.error({ err: error }, "placement pass failed");
      } finally {
        passing = undefined;
      }
    })();
    return passing;
  }

  const dispatcher: Dispatcher = {
    wake() {
      fullPass = true;
      schedule();
    },

    runPass() {
      fullPass = true;
      return run();
    },

    offer(rows) {
      for (const row of rows) offered.set(row.job_id, row);
      schedule();
    },

    async nodeAvailable(entry) {
      upsert({ ...schedulerNodeFrom(entry.record, standingOf(entry), entry.load), online: true });
      scheduler.setOnline(entry.address, true);
      await reconcile(entry.address);
      dispatcher.wake();
    },

    async nodeUpdated(entry) {
      if (scheduler.node(entry.address) === undefined) return;
      // Online here means reachable here: an open stream (or a pull in progress) on this replica.
      upsert({
        ...schedulerNodeFrom(entry.record, standingOf(entry), entry.load),
        online: hub.isConnected(entry.address),
      });
      await reconcile(entry.address);
      dispatcher.wake();
    },

    nodeUnavailable(address) {
      scheduler.setOnline(address, false);
      const node = known.get(address);
      if (node !== undefined) known.set(address, { ...node, online: false });
    },

    observe(changes) {
      let wake = false;
      let revoked = false;
      for (const lease of changes.endedLeases) {
        scheduler.release(lease.nodeAddress, lease.jobId);
        forgetRunning(lease.nodeAddress, lease.jobId);
        if (lease.state === "lapsed" || lease.state === "refused") {
          exclude(lease.jobId, lease.nodeAddress);
        }
        if (lease.state === "revoked") revoked = true;
        wake = true;
      }
      const fresh: JobRow[] = [];
      for (const job of changes.jobs) {
        if (job.state === JobState.VALIDATING || isTerminal(job.state)) jobCache.delete(job.job_id);
        if (job.state === JobState.QUEUED) fresh.push(job);
      }
      if (wake) dispatcher.wake();
      else if (fresh.length > 0) dispatcher.offer(fresh);
      if (revoked) {
        void track(
          dispatcher.deliverCancellations().catch((error: unknown) => {
            logger.warn({ err: error }, "announcing cancellations failed");
          }),
        );
      }
    },

    async deliverCancellations() {
      const connected = hub.connected();
      if (connected.length === 0) return;
      for (const { node, cancellation } of await leases.takeCancellations(connected)) {
        hub.push(node, { case: "cancellation", value: cancellation });
      }
    },

    async close() {
      closed = true;
      clearInterval(timer);
      clearInterval(refreshTimer);
      await passing;
      while (background.size > 0) await Promise.allSettled([...background]);
    },
  };

  /** Tells the scheduler about a node, remembering what it said. */
  function upsert(node: SchedulerNode): void {
    known.set(node.address, node);
    scheduler.upsertNode(node);
  }

  /**
   * A lease of `jobId` on `address` ended: the job no longer runs there for this job server, even
   * if the node's last load report still lists it (the next report will not).
   */
  function forgetRunning(address: string, jobId: string): void {
    const node = known.get(address);
    if (node?.runningJobIds?.includes(jobId) !== true) return;
    upsert({
      ...node,
      online: scheduler.node(address)?.online ?? false,
      runningJobIds: node.runningJobIds.filter((id) => id !== jobId),
    });
  }

  async function reconcile(address: string): Promise<void> {
    const state = scheduler.node(address);
    if (state === undefined || state.reservations.length === 0) return;
    const inFlight = new Set(claiming);
    const active = await options.activeJobIds(address);
    for (const reservation of state.reservations) {
      const claimed = inFlight.has(reservation.jobId) || claiming.has(reservation.jobId);
      if (!active.has(reservation.jobId) && !claimed) {
        scheduler.release(address, reservation.jobId);
      }
    }
  }

  return dispatcher;
}
