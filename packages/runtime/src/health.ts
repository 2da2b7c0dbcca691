import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  type Health as HealthService,
  HealthCheckResponse_ServingStatus as ServingStatusEnum,
} from "@tessera/proto/grpc/health/v1/health_pb.js";

/** What a service may report about itself. */
export type ServingStatus = "SERVING" | "NOT_SERVING";

/**
 * The serving status of each service name ("" stands for the whole server), as answered by
 * grpc.health.v1.Health and /healthz.
 */
export interface HealthRegistry {
  /** Sets the status of a fully qualified service name, or "" for the server; watchers are told. */
  setStatus(service: string, status: ServingStatus): void;
  /** The status of a service name, or undefined when it was never set. */
  getStatus(service: string): ServingStatus | undefined;
}

type Listener = (status: ServingStatus) => void;

/**
 * The runtime's health state. After {@link HealthState.shutdown} every service is NOT_SERVING
 * for good (setStatus cannot flip it back) and open Watch streams end after saying so.
 */
export class HealthState implements HealthRegistry {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly shutdownController = new AbortController();

  get isShutdown(): boolean {
    return this.shutdownController.signal.aborted;
  }

  setStatus(service: string, status: ServingStatus): void {
    if (this.isShutdown) return;
    this.update(service, status);
  }

  getStatus(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Marks every known service NOT_SERVING, permanently, and ends Watch streams. */
  shutdown(): void {
    if (this.isShutdown) return;
    for (const service of this.statuses.keys()) this.update(service, "NOT_SERVING");
    this.shutdownController.abort();
  }

  /** Calls `listener` on every change of `service` until `signal` aborts. */
  subscribe(service: string, listener: Listener, signal: AbortSignal): void {
    const set = this.listeners.get(service) ?? new Set<Listener>();
    this.listeners.set(service, set);
    set.add(listener);
    signal.addEventListener("abort", () => set.delete(listener), { once: true });
  }

  /** Aborts once the state has been shut down. */
  get shutdownSignal(): AbortSignal {
    return this.shutdownController.signal;
  }

  private update(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const listener of this.listeners.get(service) ?? []) listener(status);
  }
}

function response(status: ServingStatus | undefined, known: boolean): HealthCheckResponse {
  const value = !known
    ? ServingStatusEnum.SERVICE_UNKNOWN
    : status === "SERVING"
      ? ServingStatusEnum.SERVING
      : ServingStatusEnum.NOT_SERVING;
  return create(HealthCheckResponseSchema, { status: value });
}

/**
 * grpc.health.v1.Health over a {@link HealthState}, as the gRPC health protocol specifies:
 * Check answers NOT_FOUND for an unknown name; Watch sends the current status (SERVICE_UNKNOWN
 * for an unknown name) and then each change, until the caller leaves, the deadline passes, or the
 * server shuts down (then NOT_SERVING is the last message).
 */
export function createHealthService(state: HealthState): ServiceImpl<typeof HealthService> {
  return {
    check(req) {
      const status = state.getStatus(req.service);
      if (status === undefined) {
        throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      }
      return response(status, true);
    },
    async *watch(req, ctx: HandlerContext) {
      const stop = AbortSignal.any([ctx.signal, state.shutdownSignal]);
      const pending: ServingStatus[] = [];
      let wake: (() => void) | undefined;
      const notify = () => wake?.();
      const onChange = (status: ServingStatus) => {
        pending.push(status);
        notify();
      };
      state.subscribe(req.service, onChange, stop);
      stop.addEventListener("abort", notify, { once: true });
      const initial = state.getStatus(req.service);
      yield response(initial, initial !== undefined);
      for (;;) {
        const next = pending.shift();
        if (next !== undefined) {
          yield response(next, true);
        } else if (ctx.signal.aborted) {
          throw ctx.signal.reason;
        } else if (stop.aborted) {
          return;
        } else {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      }
    },
  };
}
