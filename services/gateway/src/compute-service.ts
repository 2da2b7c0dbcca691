/**
 * GatewayComputeService handlers: what compute nodes call. Every call is signed and the caller
 * must be the node it speaks for; records and completions carry their own signatures, checked
 * here before anything is recorded.
 */
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { requireCaller } from "@tessera/auth";
import { findNodeRecordProblem } from "@tessera/identity/node-record";
import { NodeType } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { GatewayComputeService } from "@tessera/proto/tessera/gateway/v1/gateway_compute_service_pb.js";
import type { Logger } from "@tessera/runtime";
import type { RegistryPort } from "@tessera/sdk/peer-clients";
import { translate } from "./connect-errors.js";
import type { Dispatcher } from "./dispatch/dispatcher.js";
import { GatewayError, invalidArgument } from "./errors.js";
import type { ModelDirectory } from "./models/model-directory.js";
import type { GatewayNode, NodeBook } from "./nodes/node-book.js";
import { createTaskStream } from "./nodes/task-stream.js";
import { fromPeerError } from "./payments/peer-failure.js";
import { checkProtocolVersion } from "./protocol-version.js";
import type { TaskEngine } from "./tasks/task-engine.js";
import { taskForNode } from "./tasks/task-status.js";

/** What the compute handlers need. */
export interface ComputeServiceDeps {
  readonly engine: TaskEngine;
  readonly nodes: NodeBook;
  readonly directory: ModelDirectory;
  readonly dispatcher: Dispatcher;
  /** Checks that the directory knows a registering node; undefined skips the check. */
  readonly registry: RegistryPort | undefined;
  readonly subnetId: bigint;
  readonly minPowDifficulty: number;
  readonly heartbeatIntervalMs: number;
  readonly now: () => number;
  readonly logger: Logger;
  /** Aborts when the gateway shuts down, ending open task streams. */
  readonly shutdown: AbortSignal;
}

const MAX_BATCH = 256;

function sameCaller(caller: string, address: string, field: string): void {
  if (address !== caller) {
    throw new GatewayError("permission_denied", `${field} must be the signed caller`);
  }
}

/** The GatewayComputeService implementation. */
export function createComputeService(
  deps: ComputeServiceDeps,
): ServiceImpl<typeof GatewayComputeService> {
  const { engine, nodes, directory, dispatcher, now, logger } = deps;

  const registeredNode = (address: string): GatewayNode => {
    const node = nodes.get(address);
    if (node === undefined) {
      throw new GatewayError("not_found", `node ${address} is not registered with this gateway`);
    }
    return node;
  };

  const checkWithRegistry = async (address: string) => {
    const registry = deps.registry;
    if (registry === undefined) return;
    let entry: Awaited<ReturnType<RegistryPort["getNode"]>>;
    try {
      entry = await registry.getNode(address);
    } catch (error) {
      throw fromPeerError(error);
    }
    if (entry === undefined) {
      throw new GatewayError(
        "failed_precondition",
        `the registry does not know node ${address}: register there first`,
      );
    }
    const bannedUntil = entry.standing?.bannedUntil;
    if (bannedUntil !== undefined && timestampMs(bannedUntil) > now()) {
      throw new GatewayError("permission_denied", `node ${address} is banned by the registry`);
    }
  };

  return {
    registerComputeNode: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "RegisterComputeNode");
        const record = req.record;
        if (record === undefined) throw invalidArgument("record", "is required");
        sameCaller(caller, record.address, "record.address");
        if (record.nodeType !== NodeType.COMPUTE) {
          throw invalidArgument("record.node_type", "must be NODE_TYPE_COMPUTE");
        }
        const problem = findNodeRecordProblem(record, {
          minPowDifficulty: deps.minPowDifficulty,
        });
        if (problem !== undefined) throw new GatewayError("unauthenticated", `record: ${problem}`);
        if (record.subnetId !== deps.subnetId) {
          throw new GatewayError(
            "failed_precondition",
            `node is in subnet ${record.subnetId}; this gateway serves subnet ${deps.subnetId}`,
          );
        }
        const known = nodes.get(record.address);
        if (known !== undefined && record.sequence < known.record.sequence) {
          throw new GatewayError(
            "failed_precondition",
            `record sequence ${record.sequence} is older than the registered ${known.record.sequence}`,
          );
        }
        await checkWithRegistry(record.address);
        const accepted = directory.accept(record.models);
        for (const model of record.models) {
          const refusal = directory.refusal(model);
          if (refusal !== undefined)
            logger.warn({ node: record.address, refusal }, "model refused");
        }
        const node = nodes.register(record, accepted, now());
        logger.info(
          { node: node.address, models: [...accepted.keys()] },
          "compute node registered",
        );
        dispatcher.wake();
        return {
          acceptedModelIds: [...accepted.keys()].sort(),
          heartbeatIntervalMs: deps.heartbeatIntervalMs,
          registeredAt: timestampFromMs(node.registeredAtMs),
        };
      }),

    updateHeartbeat: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "UpdateHeartbeat");
        sameCaller(caller, req.nodeAddress, "node_address");
        const node = registeredNode(req.nodeAddress);
        nodes.heartbeat(node, req.load, now());
        const cancelled = [...node.cancelled].sort();
        // Ids the node no longer runs were heard; the rest are told again next time.
        const active = new Set(req.load?.activeJobIds ?? []);
        for (const id of cancelled) if (!active.has(id)) node.cancelled.delete(id);
        dispatcher.wake();
        return { heartbeatIntervalMs: deps.heartbeatIntervalMs, cancelledRequestIds: cancelled };
      }),

    async *receiveTask(req, ctx) {
      const caller = requireCaller(ctx);
      const { node, stream } = await translate(async () => {
        checkProtocolVersion(req.protocolVersion, "ReceiveTask");
        sameCaller(caller, req.nodeAddress, "node_address");
        const node = nodes.get(req.nodeAddress);
        if (node === undefined) {
          throw new GatewayError(
            "failed_precondition",
            `node ${req.nodeAddress} is not registered: call RegisterComputeNode first`,
          );
        }
        for (const modelId of req.modelIds) {
          if (!node.accepted.has(modelId)) {
            throw invalidArgument("model_ids", `"${modelId}" is not an accepted model of the node`);
          }
        }
        if (req.maxBatchSize > MAX_BATCH) {
          throw invalidArgument("max_batch_size", `must be at most ${MAX_BATCH}`);
        }
        const stream = createTaskStream({
          modelIds: req.modelIds,
          maxBatchSize: Math.max(1, req.maxBatchSize),
        });
        nodes.attachStream(
          node,
          stream,
          new ConnectError(
            "a newer ReceiveTask stream of this node replaced this one",
            Code.Aborted,
          ),
        );
        return { node, stream };
      });
      logger.info({ node: node.address, maxBatchSize: stream.maxBatchSize }, "task stream opened");
      dispatcher.wake();
      const closeOnShutdown = () => stream.close();
      deps.shutdown.addEventListener("abort", closeOnShutdown);
      try {
        yield* stream.deliveries(ctx.signal);
      } finally {
        deps.shutdown.removeEventListener("abort", closeOnShutdown);
        nodes.detachStream(node, stream, now());
        const undelivered = stream
          .takeUndelivered()
          .flatMap((delivery) => delivery.tasks.map((task) => task.requestId));
        if (undelivered.length > 0) await engine.requeue(node.address, undelivered);
        logger.info({ node: node.address }, "task stream closed");
      }
    },

    submitResult: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "SubmitResult");
        if (req.result === undefined) throw invalidArgument("result", "is required");
        const task = await engine.submitResult(req.result, caller);
        return { state: task.state };
      }),

    getTask: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "GetTask");
        return { task: taskForNode(engine.nodeTask(req.requestId, caller)) };
      }),
  };
}
