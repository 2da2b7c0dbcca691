/**
 * GatewayClientService handlers: proto in, engine verbs, proto out. Every call that names a task
 * must come from the task's client (the signed caller); ListModels is an open read.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { requireCaller } from "@tessera/auth";
import { issueAccessToken } from "@tessera/identity/access-token";
import type { KeyPair } from "@tessera/identity/keys";
import type { GatewayClientService } from "@tessera/proto/tessera/gateway/v1/gateway_client_service_pb.js";
import {
  InferenceTaskState,
  type InferenceTaskStatus,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { translate } from "./connect-errors.js";
import { GatewayError, invalidArgument } from "./errors.js";
import { listModels } from "./models/list-models.js";
import type { ModelDirectory } from "./models/model-directory.js";
import type { NodeBook } from "./nodes/node-book.js";
import type { SubnetPayment } from "./payments/subnet-payment.js";
import { checkProtocolVersion } from "./protocol-version.js";
import { checkRequestId } from "./tasks/submission.js";
import { isTerminal, type Task } from "./tasks/task.js";
import type { TaskEngine } from "./tasks/task-engine.js";
import { taskStatus } from "./tasks/task-status.js";
import type { TaskTable } from "./tasks/task-table.js";

/** What the client handlers need. */
export interface ClientServiceDeps {
  readonly engine: TaskEngine;
  readonly tasks: TaskTable;
  readonly nodes: NodeBook;
  readonly directory: ModelDirectory;
  readonly subnetPayment: SubnetPayment;
  readonly subnetId: bigint;
  /** The gateway's key: escrow arbiter address and access-token issuer. */
  readonly keyPair: KeyPair;
  /** Default and longest lifetime of an access token. */
  readonly tokenTtlMs: number;
  readonly now: () => number;
  /** Aborts when the gateway shuts down, ending open subscriptions. */
  readonly shutdown: AbortSignal;
}

/** The GatewayClientService implementation. */
export function createClientService(
  deps: ClientServiceDeps,
): ServiceImpl<typeof GatewayClientService> {
  const { engine, tasks, nodes, directory, keyPair } = deps;
  const status = (task: Task): InferenceTaskStatus => taskStatus(task, keyPair.address);
  const withResult = (task: Task) => ({
    status: status(task),
    ...(task.state === InferenceTaskState.COMPLETED && task.result !== undefined
      ? {
          result: {
            ...task.result,
            ...(task.completionValidation === undefined
              ? {}
              : { completionValidation: task.completionValidation }),
          },
        }
      : {}),
  });

  async function* subscribe(requestId: string, caller: string, ctx: HandlerContext) {
    engine.clientTask(requestId, caller);
    let dirty = true;
    let wake: (() => void) | undefined;
    const poke = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const stopWatching = tasks.watch(requestId, () => {
      dirty = true;
      poke();
    });
    ctx.signal.addEventListener("abort", poke);
    deps.shutdown.addEventListener("abort", poke);
    try {
      for (;;) {
        if (ctx.signal.aborted || deps.shutdown.aborted) return;
        if (!dirty) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          continue;
        }
        dirty = false;
        const task = tasks.get(requestId);
        if (task === undefined) return;
        yield withResult(task);
        if (isTerminal(task.state)) return;
      }
    } finally {
      stopWatching();
      ctx.signal.removeEventListener("abort", poke);
      deps.shutdown.removeEventListener("abort", poke);
    }
  }

  return {
    submitInferenceTask: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "SubmitInferenceTask");
        return { status: status(await engine.submit(req, caller)) };
      }),

    async *subscribeToTaskUpdates(req, ctx) {
      const caller = requireCaller(ctx);
      const updates = await translate(async () => {
        checkProtocolVersion(req.protocolVersion, "SubscribeToTaskUpdates");
        checkRequestId(req.requestId);
        engine.clientTask(req.requestId, caller);
        return subscribe(req.requestId, caller, ctx);
      });
      yield* updates;
    },

    getTaskStatus: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "GetTaskStatus");
        checkRequestId(req.requestId);
        return withResult(engine.clientTask(req.requestId, caller));
      }),

    cancelTask: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "CancelTask");
        checkRequestId(req.requestId);
        return { status: status(await engine.cancel(req.requestId, req.reason, caller)) };
      }),

    confirmPayment: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "ConfirmPayment");
        if (req.confirmation === undefined) throw invalidArgument("confirmation", "is required");
        return { status: status(await engine.confirmPayment(req.confirmation, caller)) };
      }),

    listModels: (req) =>
      translate(async () => {
        checkProtocolVersion(req.protocolVersion, "ListModels");
        // A listing should not fail while the registry is briefly away: the last answer will do.
        const paymentRequired = await deps.subnetPayment.required().catch((error: unknown) => {
          const cached = deps.subnetPayment.cached();
          if (cached === undefined) throw error;
          return cached;
        });
        const nowMs = deps.now();
        return listModels(
          {
            category: req.category,
            subnetId: req.subnetId,
            availableOnly: req.availableOnly,
            pageSize: req.pageSize,
            pageToken: req.pageToken,
          },
          {
            directory,
            nodes: nodes.all(),
            isOnline: (node) => nodes.isOnline(node, nowMs),
            subnetId: deps.subnetId,
            paymentRequired,
          },
        );
      }),

    requestDirectAccess: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "RequestDirectAccess");
        checkRequestId(req.requestId);
        if (req.clientAddress !== caller) {
          throw new GatewayError(
            "permission_denied",
            "client_address must be the signed caller of the request",
          );
        }
        if (req.subnetId !== deps.subnetId) {
          throw invalidArgument(
            "subnet_id",
            `this gateway serves subnet ${deps.subnetId}, not ${req.subnetId}`,
          );
        }
        if (req.modelId === "") throw invalidArgument("model_id", "is required");
        if (await deps.subnetPayment.required()) {
          throw new GatewayError(
            "failed_precondition",
            `subnet ${deps.subnetId} is paid: run the model through SubmitInferenceTask so the work is approved, paid and validated`,
          );
        }
        const model = engine.model(req.modelId);
        if (model === undefined) {
          throw new GatewayError("not_found", `this gateway does not serve model "${req.modelId}"`);
        }
        const nowMs = deps.now();
        const node = nodes
          .all()
          .find(
            (n) =>
              n.accepted.has(req.modelId) &&
              nodes.isOnline(n, nowMs) &&
              n.record.endpoint !== undefined &&
              (n.record.endpoint.url !== "" || n.record.endpoint.host !== ""),
          );
        if (node === undefined || node.record.endpoint === undefined) {
          throw new GatewayError(
            "unavailable",
            `no online compute node with a reachable endpoint hosts model "${req.modelId}"`,
          );
        }
        const ttlMs =
          req.ttlMs === 0n ? deps.tokenTtlMs : Math.min(Number(req.ttlMs), deps.tokenTtlMs);
        const issued = issueAccessToken(
          keyPair,
          {
            nodeAddress: node.address,
            clientAddress: caller,
            modelId: req.modelId,
            jobId: req.requestId,
          },
          { ttlMs, now: new Date(nowMs) },
        );
        return {
          nodeAddress: node.address,
          endpoint: node.record.endpoint,
          nodePublicKey: node.record.publicKey,
          accessToken: issued.token,
          tokenExpiresAt: timestampFromDate(issued.expiresAt),
          model: node.accepted.get(req.modelId) ?? model,
        };
      }),
  };
}
