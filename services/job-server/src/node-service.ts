/**
 * NodeService handlers: what compute nodes call. Every call is signed; a node speaks only for
 * itself (node_address must be the signed caller). Leases are decided by the lease book
 * (./leases), placement by the dispatcher (./dispatch); this file moves messages and keeps the
 * node's assignment stream alive.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { requireCaller } from "@tessera/auth";
import type { KeyPair } from "@tessera/identity/keys";
import {
  type NodeService,
  type ReceiveAssignmentsResponse,
  ReceiveAssignmentsResponseSchema,
  StreamKeepaliveSchema,
} from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import type { Logger } from "@tessera/runtime";
import type { RegistryPort } from "@tessera/sdk/peer-clients";
import { requireSelf, translate, translateStream } from "./connect-errors.js";
import type { Dispatcher } from "./dispatch/dispatcher.js";
import { invalidArgument, JobServerError } from "./errors.js";
import { statusOf } from "./jobs/job-row.js";
import { isJobId } from "./jobs/spec-check.js";
import type { LeaseBook } from "./leases/lease-book.js";
import type { AssignmentHub } from "./nodes/assignment-hub.js";
import { type NodeBook, type NodeStandingHint, standingOf } from "./nodes/node-book.js";
import { checkProtocolVersion, PROTOCOL_VERSION } from "./protocol-version.js";

/** What {@link createNodeService} needs. */
export interface NodeServiceDeps {
  readonly nodes: NodeBook;
  readonly leases: LeaseBook;
  readonly dispatcher: Dispatcher;
  readonly hub: AssignmentHub;
  /** The registry, asked for a registering node's reputation and ban; undefined when none. */
  readonly registry: RegistryPort | undefined;
  /** The job server's key: its address and public key are announced at registration. */
  readonly keyPair: KeyPair;
  readonly heartbeatIntervalMs: number;
  readonly leaseMs: number;
  readonly keepaliveMs: number;
  /** Addresses that may read any node's metrics. */
  readonly readers: ReadonlySet<string>;
  readonly logger: Logger;
  readonly now: () => number;
  /** Aborts when the server shuts down: assignment streams end so nodes reconnect elsewhere. */
  readonly shutdown: AbortSignal;
}

/** Longest AssignJob wait. */
const MAX_WAIT_MS = 30_000;
/** Longest life of one assignment stream (the node reopens it). */
const MAX_STREAM_MS = 30 * 60 * 1000;
/** A stream ends this long before its deadline, cleanly. */
const DEADLINE_MARGIN_MS = 1000;
/** How long registration waits for the registry's view of the node. */
const STANDING_LOOKUP_MS = 2000;

function checkLeaseFields(jobId: string, leaseId: string): void {
  if (!isJobId(jobId))
    throw invalidArgument("job_id", "must be 1-128 characters of [A-Za-z0-9._:-]");
  if (leaseId === "") throw invalidArgument("lease_id", "is required");
}

/** The full NodeService. */
export function createNodeService(deps: NodeServiceDeps): ServiceImpl<typeof NodeService> {
  const { nodes, leases, dispatcher, hub, registry, keyPair, logger, now } = deps;

  async function registeredNode(address: string, load: Parameters<NodeBook["reportLoad"]>[1]) {
    const entry = await nodes.reportLoad(address, load);
    if (entry === undefined) {
      throw new JobServerError(
        "not_found",
        `node ${address} is not registered with this job server: call RegisterNode`,
      );
    }
    return entry;
  }

  async function standingHint(address: string): Promise<NodeStandingHint> {
    if (registry === undefined) return {};
    let timer: NodeJS.Timeout | undefined;
    try {
      const standing = await Promise.race([
        registry.nodeStanding(address),
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), STANDING_LOOKUP_MS);
        }),
      ]);
      return standing ?? {};
    } catch (error) {
      logger.debug({ err: error, node: address }, "registry standing not available");
      return {};
    } finally {
      clearTimeout(timer);
    }
  }

  const keepalive = (): ReceiveAssignmentsResponse =>
    create(ReceiveAssignmentsResponseSchema, {
      event: {
        case: "keepalive",
        value: create(StreamKeepaliveSchema, {
          serverTime: timestampFromMs(now()),
          intervalMs: BigInt(deps.keepaliveMs),
        }),
      },
    });

  async function* assignments(
    address: string,
    load: Parameters<NodeBook["reportLoad"]>[1],
    ctx: HandlerContext,
  ): AsyncGenerator<ReceiveAssignmentsResponse> {
    const entry = await registeredNode(address, load);
    const signal = AbortSignal.any([ctx.signal, deps.shutdown]);
    const endAt = now() + MAX_STREAM_MS;
    const channel = hub.open(address, "stream");
    try {
      yield keepalive();
      for (const assignment of await leases.pendingAssignments(address)) {
        yield create(ReceiveAssignmentsResponseSchema, {
          event: { case: "assignment", value: assignment },
        });
      }
      await dispatcher.nodeAvailable(entry);
      await dispatcher.deliverCancellations();
      while (!channel.closed && !signal.aborted && now() < endAt) {
        const left = ctx.timeoutMs();
        if (left !== undefined && left < DEADLINE_MARGIN_MS) break;
        const wait =
          left === undefined
            ? deps.keepaliveMs
            : Math.min(deps.keepaliveMs, left - DEADLINE_MARGIN_MS);
        const events = await channel.next(wait, signal);
        if (events.length === 0) {
          if (channel.closed || signal.aborted) break;
          await nodes.touch(address);
          yield keepalive();
          continue;
        }
        for (const event of events) yield create(ReceiveAssignmentsResponseSchema, { event });
      }
    } finally {
      channel.close();
    }
  }

  return {
    registerNode: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "RegisterNode");
        const hint = req.record?.address === caller ? await standingHint(caller) : {};
        const entry = await nodes.register(caller, req.record, hint);
        await dispatcher.nodeUpdated(entry);
        return {
          nodeAddress: entry.address,
          standing: standingOf(entry),
          heartbeatIntervalMs: BigInt(deps.heartbeatIntervalMs),
          leaseDurationMs: BigInt(deps.leaseMs),
          serverAddress: keyPair.address,
          serverPublicKey: keyPair.publicKey,
          serverProtocolVersion: PROTOCOL_VERSION,
        };
      }),

    heartbeat: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "Heartbeat");
        requireSelf(caller, req.nodeAddress);
        const base = {
          nextHeartbeatIntervalMs: BigInt(deps.heartbeatIntervalMs),
          serverTime: timestampFromMs(now()),
        };
        const entry = await nodes.reportLoad(caller, req.load);
        if (entry === undefined) return { ...base, reregisterRequired: true };
        const renewal = await leases.renew(caller, req.activeLeaseIds);
        await dispatcher.nodeUpdated(entry);
        return {
          ...base,
          reregisterRequired: false,
          cancellations: renewal.cancellations,
          leaseExtensions: renewal.extensions,
        };
      }),

    assignJob: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "AssignJob");
        requireSelf(caller, req.nodeAddress);
        if (req.waitMs > MAX_WAIT_MS) throw invalidArgument("wait_ms", `at most ${MAX_WAIT_MS}`);
        const entry = await registeredNode(caller, req.load);
        const retryAfterMs = BigInt(Math.min(1000, deps.heartbeatIntervalMs));
        const pending = await leases.pendingAssignments(caller);
        if (pending[0] !== undefined) return { assignment: pending[0] };
        if (hub.isConnected(caller)) {
          // Its stream is open here: new assignments go there.
          await dispatcher.runPass();
          const after = await leases.pendingAssignments(caller);
          return after[0] !== undefined ? { assignment: after[0] } : { retryAfterMs };
        }
        const channel = hub.open(caller, "poll");
        try {
          await dispatcher.nodeAvailable(entry);
          await dispatcher.runPass();
          const until = now() + req.waitMs;
          do {
            const events = await channel.next(Math.max(0, until - now()), ctx.signal);
            const assigned = events.find((event) => event.case === "assignment");
            if (assigned?.case === "assignment") return { assignment: assigned.value };
          } while (now() < until && !ctx.signal.aborted && !channel.closed);
        } finally {
          channel.close();
        }
        return { retryAfterMs };
      }),

    receiveAssignments: (req, ctx) =>
      translateStream(() => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "ReceiveAssignments");
        requireSelf(caller, req.nodeAddress);
        return assignments(caller, req.load, ctx);
      }),

    reportProgress: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "ReportProgress");
        requireSelf(caller, req.nodeAddress);
        checkLeaseFields(req.jobId, req.leaseId);
        const answer = await leases.progress(caller, req.jobId, req.leaseId, {
          progress: req.progress,
          currentEpoch: req.currentEpoch,
          currentRound: req.currentRound,
          metrics: req.metrics,
          logs: req.logs,
          visualizationData: req.visualizationData,
          visualizationMediaType: req.visualizationMediaType,
        });
        await nodes.touch(caller);
        return {
          shouldContinue: answer.shouldContinue,
          ...(answer.leaseExpiresAtMs === undefined
            ? {}
            : { leaseExpiresAt: timestampFromMs(answer.leaseExpiresAtMs) }),
        };
      }),

    reportCompletion: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "ReportCompletion");
        requireSelf(caller, req.nodeAddress);
        checkLeaseFields(req.jobId, req.leaseId);
        const job = await leases.close(
          caller,
          req.jobId,
          req.leaseId,
          req.outcome,
          Number(req.computeTimeMs),
          req.reason,
        );
        return { status: statusOf(job) };
      }),

    getNodeMetrics: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "GetNodeMetrics");
        if (req.nodeAddress === "") throw invalidArgument("node_address", "is required");
        if (req.nodeAddress !== caller && !deps.readers.has(caller)) {
          throw new JobServerError(
            "permission_denied",
            "a node's metrics are for the node itself and the configured readers",
          );
        }
        const entry = await nodes.get(req.nodeAddress);
        if (entry === undefined) {
          throw new JobServerError("not_found", `node ${req.nodeAddress} was never registered`);
        }
        return {
          record: entry.record,
          standing: standingOf(entry),
          ...(entry.load === undefined ? {} : { load: entry.load }),
          jobsRunning: await nodes.activeLeaseCount(entry.address),
          jobsCompleted: BigInt(entry.jobsCompleted),
          jobsFailed: BigInt(entry.jobsFailed),
          computeTimeMs: BigInt(entry.computeTimeMs),
          earnedAmount: entry.earnedAmount.toString(),
        };
      }),

    notifyJobAccepted: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "NotifyJobAccepted");
        requireSelf(caller, req.nodeAddress);
        checkLeaseFields(req.jobId, req.leaseId);
        const answer = await leases.accept(
          caller,
          req.jobId,
          req.leaseId,
          req.accepted,
          req.rejectReason,
        );
        return {
          ...(answer.leaseExpiresAtMs === undefined
            ? {}
            : { leaseExpiresAt: timestampFromMs(answer.leaseExpiresAtMs) }),
          status: statusOf(answer.job),
        };
      }),
  };
}
