/**
 * The node's life with the job server: register its signed record, heartbeat at the interval the
 * server asks for (renewing leases, acting on cancellations and on "register again"), keep the
 * assignment stream open (reopening it whenever it ends or goes silent), run assignments up to
 * its capacity, and on shutdown give running jobs back so they are requeued at once.
 */
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { KeyPair } from "@tessera/identity/keys";
import {
  type NodeLoad,
  NodeLoadSchema,
  type NodeRecord,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { Assignment, JobCancellation } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { NodeService } from "@tessera/proto/tessera/job/v1/node_service_pb.js";
import type { Logger } from "@tessera/runtime";
import { NODE_PROTOCOL_VERSION } from "../protocol-version.js";
import { Backoff, sleep } from "./backoff.js";
import { type Capacity, type JobLimits, jobLimits, refusalReason } from "./capacity.js";
import type { JobRun } from "./job-run.js";
import { withRetries } from "./retry.js";
import { Waker } from "./waker.js";

/** Live measurements that go into the node's load. */
export interface LiveLoad {
  /** RAM free on the machine now, in bytes. */
  readonly machineFreeBytes: number;
  /** The node's devices with their free memory now. */
  readonly devices: NodeLoad["devices"];
  /** CPU utilisation in [0, 1]. */
  readonly cpuUtilization: number;
}

/** Options of {@link NodeAgent}. */
export interface NodeAgentOptions {
  readonly keyPair: KeyPair;
  /** The node's sealed record, sent with every registration. */
  readonly record: NodeRecord;
  readonly node: Client<typeof NodeService>;
  readonly capacity: Capacity;
  /** Makes the run of one accepted assignment. */
  readonly createRun: (assignment: Assignment, limits: JobLimits) => JobRun;
  /** Measures the machine now. */
  readonly measure: () => LiveLoad;
  readonly logger: Logger;
  /** Client deadline of one assignment stream; it is reopened after. Default 120,000 ms. */
  readonly streamTimeoutMs?: number | undefined;
  /** On close, how long running jobs get to give their leases back. Default 15,000 ms. */
  readonly shutdownGraceMs?: number | undefined;
  /** Called whenever the load changes (a job started or ended). */
  readonly onLoadChange?: (() => void) | undefined;
}

/** Where the agent is. */
export type NodeAgentState = "idle" | "registering" | "online" | "stopping" | "stopped";

/** Heartbeat interval used until the server names one. */
const DEFAULT_HEARTBEAT_MS = 10_000;
/** Keepalive interval assumed until the server names one. */
const DEFAULT_KEEPALIVE_MS = 10_000;
/** A session shorter than this counts as a failure for the re-registration backoff. */
const HEALTHY_SESSION_MS = 5_000;

/** Whether an error says the server does not know this node (register again). */
function isUnknownNode(error: unknown): boolean {
  const { code, rawMessage } = ConnectError.from(error);
  return code === Code.NotFound || (code === Code.FailedPrecondition && /regist/i.test(rawMessage));
}

/**
 * A node's load: memory left for jobs (its budget minus the limits of the running jobs, at most
 * what the machine has free), live devices, running jobs, and free slots (none when the node
 * takes no more work).
 */
export function buildNodeLoad(
  capacity: Capacity,
  live: LiveLoad,
  running: ReadonlyArray<{ readonly jobId: string; readonly limits: JobLimits }>,
  acceptingWork: boolean,
): NodeLoad {
  const reserved = running.reduce((sum, run) => sum + run.limits.maxMemoryBytes, 0);
  const free = Math.max(0, Math.min(capacity.memoryBudgetBytes - reserved, live.machineFreeBytes));
  return create(NodeLoadSchema, {
    ramAvailableBytes: BigInt(Math.floor(free)),
    devices: live.devices,
    activeJobIds: running.map((run) => run.jobId),
    freeSlots: acceptingWork ? Math.max(0, capacity.maxConcurrentJobs - running.length) : 0,
    cpuUtilization: Math.min(1, Math.max(0, live.cpuUtilization)),
  });
}

/** The node's agent towards one job server. */
export class NodeAgent {
  readonly #options: NodeAgentOptions;
  readonly #log: Logger;
  readonly #runs = new Map<string, JobRun>();
  readonly #settled = new Map<string, Promise<void>>();
  /** Aborted when the node stops taking work (close begins). */
  readonly #noMoreWork = new AbortController();
  /** Aborted when everything stops (close ends). */
  readonly #stopped = new AbortController();
  readonly #heartbeatWaker = new Waker();
  #state: NodeAgentState = "idle";
  #heartbeatMs = DEFAULT_HEARTBEAT_MS;
  #loop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: NodeAgentOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: "job-server-agent" });
  }

  /** Where the agent is. */
  get state(): NodeAgentState {
    return this.#state;
  }

  /** The leases the node works under now. */
  get activeLeaseIds(): string[] {
    return [...this.#runs.keys()];
  }

  /** Starts registering and taking work; returns at once. Calling it again does nothing. */
  start(): void {
    this.#loop ??= this.#sessionLoop().catch((error: unknown) => {
      this.#log.error({ err: error }, "job server agent stopped unexpectedly");
    });
  }

  /** The node's load now: free memory for jobs, devices, running jobs, free slots. */
  load(): NodeLoad {
    return buildNodeLoad(
      this.#options.capacity,
      this.#options.measure(),
      [...this.#runs.values()],
      !this.#noMoreWork.signal.aborted,
    );
  }

  /**
   * Stops taking work, gives every running job back (RELEASED, so it is requeued at once), waits
   * up to the shutdown grace for that, then stops everything. Safe to call twice.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#state = "stopping";
    this.#noMoreWork.abort();
    const running = [...this.#runs.values()];
    if (running.length > 0) this.#log.info({ jobs: running.length }, "giving running jobs back");
    for (const run of running) run.stop("released", "the node is shutting down");
    const all = Promise.all(this.#settled.values());
    const graceMs = this.#options.shutdownGraceMs ?? 15_000;
    const graceOver = new AbortController();
    const timedOut = await Promise.race([
      all.then(() => false),
      sleep(graceMs, graceOver.signal).then(() => !graceOver.signal.aborted),
    ]);
    graceOver.abort();
    if (timedOut) {
      this.#log.warn({ graceMs }, "jobs did not finish within the shutdown grace; stopping them");
      for (const run of this.#runs.values()) run.abort();
      await all;
    }
    this.#stopped.abort();
    await this.#loop;
    this.#state = "stopped";
  }

  async #sessionLoop(): Promise<void> {
    const backoff = new Backoff({ initialMs: 500, maxMs: 30_000 });
    const stop = this.#stopped.signal;
    while (!stop.aborted) {
      this.#state = this.#noMoreWork.signal.aborted ? "stopping" : "registering";
      try {
        await this.#register();
      } catch (error) {
        if (stop.aborted) break;
        const delay = backoff.next();
        this.#log.warn({ err: error, retryInMs: delay }, "cannot register with the job server");
        await sleep(delay, stop);
        continue;
      }
      if (!this.#noMoreWork.signal.aborted) this.#state = "online";
      const began = performance.now();
      const session = new AbortController();
      const sessionStop = AbortSignal.any([session.signal, stop]);
      await Promise.all([
        this.#heartbeatLoop(session, sessionStop),
        this.#streamLoop(session, AbortSignal.any([sessionStop, this.#noMoreWork.signal])),
      ]);
      if (stop.aborted) break;
      if (performance.now() - began >= HEALTHY_SESSION_MS) backoff.reset();
      else await sleep(backoff.next(), stop);
    }
  }

  async #register(): Promise<void> {
    const answer = await withRetries(
      () =>
        this.#options.node.registerNode(
          { protocolVersion: NODE_PROTOCOL_VERSION, record: this.#options.record },
          { timeoutMs: 15_000, signal: this.#stopped.signal },
        ),
      { attempts: 3, signal: this.#stopped.signal },
    );
    const server = answer.serverProtocolVersion;
    if (server !== undefined && server.major !== NODE_PROTOCOL_VERSION.major) {
      this.#log.error(
        { serverVersion: `${server.major}.${server.minor}.${server.patch}` },
        "the job server speaks another major protocol version",
      );
    }
    if (answer.heartbeatIntervalMs > 0n) this.#heartbeatMs = Number(answer.heartbeatIntervalMs);
    this.#log.info(
      {
        address: answer.nodeAddress,
        heartbeatMs: this.#heartbeatMs,
        leaseMs: Number(answer.leaseDurationMs),
      },
      "registered with the job server",
    );
  }

  async #heartbeatLoop(session: AbortController, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.#heartbeatWaker.wait(this.#heartbeatMs, signal);
      if (signal.aborted) return;
      try {
        const answer = await this.#options.node.heartbeat(
          {
            protocolVersion: NODE_PROTOCOL_VERSION,
            nodeAddress: this.#options.keyPair.address,
            load: this.load(),
            activeLeaseIds: this.activeLeaseIds,
          },
          { timeoutMs: 10_000, signal },
        );
        if (answer.nextHeartbeatIntervalMs > 0n) {
          this.#heartbeatMs = Number(answer.nextHeartbeatIntervalMs);
        }
        for (const cancellation of answer.cancellations) this.#cancel(cancellation);
        if (answer.reregisterRequired) {
          this.#log.info("the job server asks the node to register again");
          session.abort();
          return;
        }
      } catch (error) {
        if (signal.aborted) return;
        if (isUnknownNode(error)) {
          this.#log.info(
            { err: error },
            "the job server does not know the node; registering again",
          );
          session.abort();
          return;
        }
        this.#log.warn({ err: error }, "heartbeat failed");
      }
    }
  }

  async #streamLoop(session: AbortController, signal: AbortSignal): Promise<void> {
    const backoff = new Backoff({ initialMs: 250, maxMs: 15_000 });
    const timeoutMs = this.#options.streamTimeoutMs ?? 120_000;
    while (!signal.aborted) {
      const call = new AbortController();
      const callSignal = AbortSignal.any([call.signal, signal]);
      let keepaliveMs = DEFAULT_KEEPALIVE_MS;
      let watchdog: NodeJS.Timeout | undefined;
      let silent = false;
      const armWatchdog = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(
          () => {
            silent = true;
            call.abort();
          },
          2 * keepaliveMs + 5_000,
        );
      };
      let received = 0;
      try {
        armWatchdog();
        const stream = this.#options.node.receiveAssignments(
          {
            protocolVersion: NODE_PROTOCOL_VERSION,
            nodeAddress: this.#options.keyPair.address,
            load: this.load(),
          },
          { signal: callSignal, timeoutMs },
        );
        for await (const response of stream) {
          received++;
          backoff.reset();
          const event = response.event;
          switch (event.case) {
            case "assignment":
              this.#onAssignment(event.value);
              break;
            case "cancellation":
              this.#cancel(event.value);
              break;
            case "leaseExtension":
              break;
            case "keepalive":
              if (event.value.intervalMs > 0n) keepaliveMs = Number(event.value.intervalMs);
              break;
          }
          armWatchdog();
        }
        // The server ended the stream (its deadline, or a newer stream): reopen it.
        if (received === 0) await sleep(backoff.next(), signal);
      } catch (error) {
        if (signal.aborted) return;
        const { code } = ConnectError.from(error);
        if (silent) {
          this.#log.info("the assignment stream went silent; reopening it");
        } else if (code === Code.DeadlineExceeded) {
          // Our own client deadline: reopen at once.
        } else if (isUnknownNode(error)) {
          this.#log.info(
            { err: error },
            "the job server does not know the node; registering again",
          );
          session.abort();
          return;
        } else {
          const delay = backoff.next();
          this.#log.warn({ err: error, retryInMs: delay }, "assignment stream failed");
          await sleep(delay, signal);
        }
      } finally {
        clearTimeout(watchdog);
        call.abort();
      }
    }
  }

  #onAssignment(assignment: Assignment): void {
    const spec = assignment.spec;
    if (this.#runs.has(assignment.leaseId)) return;
    const usage = {
      runningJobs: this.#runs.size,
      reservedMemoryBytes: [...this.#runs.values()].reduce(
        (sum, run) => sum + run.limits.maxMemoryBytes,
        0,
      ),
    };
    const reason = this.#noMoreWork.signal.aborted
      ? "the node is shutting down"
      : spec === undefined
        ? "the assignment has no job spec"
        : refusalReason(spec, this.#options.capacity, usage);
    if (reason !== undefined || spec === undefined) {
      this.#refuse(assignment, reason ?? "the assignment has no job spec");
      return;
    }
    const run = this.#options.createRun(assignment, jobLimits(spec, this.#options.capacity));
    this.#runs.set(assignment.leaseId, run);
    const settled = run.run().finally(() => {
      this.#runs.delete(assignment.leaseId);
      this.#settled.delete(assignment.leaseId);
      this.#loadChanged();
    });
    this.#settled.set(assignment.leaseId, settled);
    this.#loadChanged();
  }

  #refuse(assignment: Assignment, reason: string): void {
    this.#log.info(
      { jobId: assignment.jobId, leaseId: assignment.leaseId, reason },
      "refusing assignment",
    );
    void this.#options.node
      .notifyJobAccepted(
        {
          protocolVersion: NODE_PROTOCOL_VERSION,
          nodeAddress: this.#options.keyPair.address,
          jobId: assignment.jobId,
          leaseId: assignment.leaseId,
          accepted: false,
          rejectReason: reason,
        },
        { timeoutMs: 10_000 },
      )
      .catch((error: unknown) => this.#log.warn({ err: error }, "cannot refuse the assignment"));
  }

  #cancel(cancellation: JobCancellation): void {
    const run =
      this.#runs.get(cancellation.leaseId) ??
      (cancellation.leaseId === ""
        ? [...this.#runs.values()].find((candidate) => candidate.jobId === cancellation.jobId)
        : undefined);
    run?.stop("cancelled", cancellation.reason || "cancelled by the job server");
  }

  #loadChanged(): void {
    this.#heartbeatWaker.wake();
    this.#options.onLoadChange?.();
  }
}
