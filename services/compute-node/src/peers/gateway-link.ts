/**
 * The node's link to its gateway (GatewayComputeService): registers its sealed record, heartbeats
 * its load at the interval the gateway asks for (stopping tasks the gateway cancelled), keeps the
 * ReceiveTask stream open with reconnects and backoff, runs each delivered task through the
 * hosted model and submits its signed result, retrying while the gateway is unreachable.
 * Registers again when the gateway forgets the node. Closing stops taking tasks, lets running
 * ones finish and submit within the grace, then abandons the rest (the gateway reassigns them).
 */

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { KeyPair } from "@tessera/identity/keys";
import type { HostedModel } from "@tessera/ml/model-host";
import type { NodeLoad, NodeRecord } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { GatewayComputeService } from "@tessera/proto/tessera/gateway/v1/gateway_compute_service_pb.js";
import type { InferenceTask } from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import type { Logger } from "@tessera/runtime";
import { Backoff, sleep } from "../agent/backoff.js";
import { withRetries } from "../agent/retry.js";
import { Waker } from "../agent/waker.js";
import { runInferenceTask } from "../inference/inference-task.js";
import { NODE_PROTOCOL_VERSION } from "../protocol-version.js";

/** Options of {@link startGatewayLink}. */
export interface GatewayLinkOptions {
  /** A GatewayComputeService client whose calls are signed for the gateway. */
  readonly gateway: Client<typeof GatewayComputeService>;
  readonly keyPair: KeyPair;
  /** The node's sealed record, listing its hosted models. */
  readonly record: NodeRecord;
  /** The hosted models, by id. */
  readonly model: (modelId: string) => HostedModel | undefined;
  /** Most tasks the node asks for in one delivery (its largest model batch), 1-256. */
  readonly maxBatchSize: number;
  /** The node's load now; the link fills in `active_job_ids` with the tasks it runs. */
  readonly load: () => NodeLoad;
  /** How long running tasks get to finish and submit when the link closes. */
  readonly shutdownGraceMs: number;
  readonly logger: Logger;
  /** Client deadline of one ReceiveTask stream, after which it is reopened; default 120,000 ms. */
  readonly streamTimeoutMs?: number | undefined;
  /** First delay of the reconnect backoff; default 250 ms (tests use less). */
  readonly initialBackoffMs?: number | undefined;
}

/** Where the link is. */
export type GatewayLinkState = "connecting" | "ready" | "closing" | "closed";

/** A running link; `close()` is safe to call twice. */
export interface GatewayLink {
  readonly state: GatewayLinkState;
  /** Request ids of the tasks running now. */
  activeRequestIds(): string[];
  close(): Promise<void>;
}

/** A task being run: its abort and its settled promise. */
interface RunningTask {
  readonly abort: AbortController;
  cancelled: boolean;
  done: Promise<void>;
}

const DEFAULT_HEARTBEAT_MS = 2000;
const DEFAULT_STREAM_TIMEOUT_MS = 120_000;
/** Most tasks a ReceiveTask request may ask for (gateway_compute_service.proto). */
const MAX_STREAM_BATCH = 256;

/** Whether the gateway no longer knows the node: register again. */
function isNotRegistered(error: unknown): boolean {
  const { code, rawMessage } = ConnectError.from(error);
  return code === Code.NotFound || (code === Code.FailedPrecondition && /regist/i.test(rawMessage));
}

/** Starts the link in the background; never throws. */
export function startGatewayLink(options: GatewayLinkOptions): GatewayLink {
  const log = options.logger.child({ component: "gateway-link" });
  const { gateway, keyPair } = options;
  const nodeAddress = keyPair.address;
  const hosted = new Set(options.record.models.map((model) => model.modelId));
  const maxBatchSize = Math.min(MAX_STREAM_BATCH, Math.max(1, options.maxBatchSize));
  const initialBackoffMs = options.initialBackoffMs ?? 250;
  /** Aborted when the link takes no more tasks (close begins). */
  const noMoreTasks = new AbortController();
  /** Aborted when everything stops (after the grace). */
  const stopped = new AbortController();
  const running = new Map<string, RunningTask>();
  const heartbeatWaker = new Waker();
  let state: GatewayLinkState = "connecting";
  let heartbeatMs = DEFAULT_HEARTBEAT_MS;
  /** The heartbeat loop of the current session. */
  let beats: Promise<void> = Promise.resolve();

  function load(): NodeLoad {
    return { ...options.load(), activeJobIds: [...running.keys()] };
  }

  function cancel(requestId: string): void {
    const task = running.get(requestId);
    if (task === undefined) return;
    task.cancelled = true;
    task.abort.abort(new ConnectError("the gateway cancelled the task", Code.Canceled));
    log.info({ requestId }, "task cancelled by the gateway");
  }

  async function submit(task: InferenceTask, run: RunningTask): Promise<void> {
    const result = await runInferenceTask(
      task,
      { keyPair, model: options.model, logger: log },
      run.abort.signal,
    );
    if (run.cancelled) return;
    try {
      const answer = await withRetries(
        () =>
          gateway.submitResult(
            { protocolVersion: NODE_PROTOCOL_VERSION, result },
            { timeoutMs: 15_000, signal: stopped.signal },
          ),
        { attempts: 6, signal: stopped.signal, initialDelayMs: initialBackoffMs },
      );
      // Per task at debug: at inference rates an info line per task costs the node real CPU.
      log.debug(
        {
          requestId: task.requestId,
          modelId: task.modelId,
          outcome: result.outcome,
          state: answer.state,
          computationTimeMs: Number(result.computeCompletion?.computationTimeMs ?? 0n),
        },
        "task result submitted",
      );
    } catch (error) {
      if (stopped.signal.aborted) return;
      // Refused (deadline passed, reassigned, a different result): the gateway decides, not us.
      log.warn({ err: error, requestId: task.requestId }, "the gateway did not take the result");
    }
  }

  function start(task: InferenceTask): void {
    if (noMoreTasks.signal.aborted) return;
    // A task delivered again after a reconnect is already running.
    if (running.has(task.requestId)) return;
    const abort = new AbortController();
    const untilDeadlineMs =
      task.deadline === undefined ? undefined : timestampDate(task.deadline).getTime() - Date.now();
    const timer =
      untilDeadlineMs === undefined
        ? undefined
        : setTimeout(
            () =>
              abort.abort(new ConnectError("the task's deadline passed", Code.DeadlineExceeded)),
            Math.max(0, untilDeadlineMs),
          );
    const onStop = () => abort.abort(stopped.signal.reason);
    stopped.signal.addEventListener("abort", onStop, { once: true });
    const entry: RunningTask = { abort, cancelled: false, done: Promise.resolve() };
    running.set(task.requestId, entry);
    entry.done = submit(task, entry)
      .catch((error: unknown) => {
        if (abort.signal.aborted) {
          log.info(
            {
              requestId: task.requestId,
              reason: ConnectError.from(abort.signal.reason).rawMessage,
            },
            "task stopped before its result",
          );
        } else {
          log.error({ err: error, requestId: task.requestId }, "task failed unexpectedly");
        }
      })
      .finally(() => {
        clearTimeout(timer);
        stopped.signal.removeEventListener("abort", onStop);
        running.delete(task.requestId);
      });
  }

  async function register(signal: AbortSignal): Promise<string[] | undefined> {
    const backoff = new Backoff({ initialMs: initialBackoffMs, maxMs: 10_000 });
    while (!signal.aborted) {
      try {
        const answer = await gateway.registerComputeNode(
          { protocolVersion: NODE_PROTOCOL_VERSION, record: options.record },
          { timeoutMs: 15_000, signal },
        );
        if (answer.heartbeatIntervalMs > 0) heartbeatMs = answer.heartbeatIntervalMs;
        const accepted = answer.acceptedModelIds.filter((id) => hosted.has(id));
        log.info(
          { accepted, refused: [...hosted].filter((id) => !accepted.includes(id)), heartbeatMs },
          "registered with the gateway",
        );
        return accepted;
      } catch (error) {
        if (signal.aborted) return undefined;
        const delay = backoff.next();
        log.warn({ err: error, retryInMs: delay }, "cannot register with the gateway");
        await sleep(delay, signal);
      }
    }
    return undefined;
  }

  async function heartbeatLoop(session: AbortController, signal: AbortSignal): Promise<void> {
    // The first beat goes out at once: the gateway routes to nodes it has heard from.
    for (let first = true; !signal.aborted; first = false) {
      if (!first) await heartbeatWaker.wait(heartbeatMs, signal);
      if (signal.aborted) return;
      try {
        const answer = await gateway.updateHeartbeat(
          { protocolVersion: NODE_PROTOCOL_VERSION, nodeAddress, load: load() },
          { timeoutMs: 10_000, signal },
        );
        if (answer.heartbeatIntervalMs > 0) heartbeatMs = answer.heartbeatIntervalMs;
        for (const requestId of answer.cancelledRequestIds) cancel(requestId);
      } catch (error) {
        if (signal.aborted) return;
        if (isNotRegistered(error)) {
          log.info({ err: error }, "the gateway does not know the node; registering again");
          session.abort();
          return;
        }
        log.warn({ err: error }, "gateway heartbeat failed");
      }
    }
  }

  async function streamLoop(
    session: AbortController,
    modelIds: readonly string[],
    signal: AbortSignal,
  ): Promise<void> {
    const backoff = new Backoff({ initialMs: initialBackoffMs, maxMs: 15_000 });
    const timeoutMs = options.streamTimeoutMs ?? DEFAULT_STREAM_TIMEOUT_MS;
    while (!signal.aborted) {
      let received = 0;
      try {
        const stream = gateway.receiveTask(
          {
            protocolVersion: NODE_PROTOCOL_VERSION,
            nodeAddress,
            modelIds: [...modelIds],
            maxBatchSize,
          },
          { signal, timeoutMs },
        );
        state = "ready";
        for await (const response of stream) {
          received++;
          backoff.reset();
          for (const task of response.tasks) start(task);
          if (response.tasks.length > 0) heartbeatWaker.wake();
        }
        // The gateway ended the stream (its deadline): reopen it.
        if (received === 0) await sleep(backoff.next(), signal);
      } catch (error) {
        if (signal.aborted) return;
        const { code } = ConnectError.from(error);
        if (isNotRegistered(error)) {
          log.info({ err: error }, "the gateway does not know the node; registering again");
          session.abort();
          return;
        }
        if (code !== Code.DeadlineExceeded) {
          const delay = backoff.next();
          log.warn({ err: error, retryInMs: delay }, "task stream broke; reopening it");
          await sleep(delay, signal);
        }
      }
    }
  }

  async function loop(): Promise<void> {
    while (!noMoreTasks.signal.aborted) {
      state = "connecting";
      const session = new AbortController();
      const sessionSignal = AbortSignal.any([session.signal, noMoreTasks.signal]);
      const accepted = await register(sessionSignal);
      if (accepted === undefined) continue;
      // Heartbeats go on while running tasks drain, so the gateway keeps waiting for their results.
      beats = heartbeatLoop(session, AbortSignal.any([session.signal, stopped.signal]));
      if (accepted.length === 0) {
        log.warn("the gateway accepted none of the node's models: no tasks will come");
        await sleep(60_000, sessionSignal);
        session.abort();
      } else {
        await streamLoop(session, accepted, sessionSignal);
      }
      // Closing: the beats go on for the draining tasks; close() stops them after.
      if (noMoreTasks.signal.aborted) return;
      session.abort();
      await beats;
    }
  }

  const looping = loop().catch((error: unknown) => {
    log.error({ err: error }, "gateway link stopped unexpectedly");
  });
  let closing: Promise<void> | undefined;

  async function close(): Promise<void> {
    state = "closing";
    noMoreTasks.abort();
    await looping;
    const drained = Promise.all([...running.values()].map((task) => task.done));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, options.shutdownGraceMs);
    });
    await Promise.race([drained, graceOver]);
    clearTimeout(timer);
    if (running.size > 0) {
      log.warn(
        { requestIds: [...running.keys()] },
        "abandoning tasks still running at shutdown; the gateway reassigns them",
      );
    }
    stopped.abort(new ConnectError("the node is shutting down", Code.Unavailable));
    await Promise.all([...running.values()].map((task) => task.done));
    await beats;
    state = "closed";
  }

  return {
    get state() {
      return state;
    },
    activeRequestIds: () => [...running.keys()],
    close() {
      closing ??= close();
      return closing;
    },
  };
}
