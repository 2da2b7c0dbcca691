import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

/** One finished RPC, as the metrics see it. */
export interface RpcObservation {
  /** Fully qualified proto service, e.g. "grpc.health.v1.Health". */
  service: string;
  /** Method name, e.g. "Check". */
  method: string;
  /** Connect code in snake case ("ok", "invalid_argument", ...). */
  code: string;
  durationMs: number;
}

/** Prometheus metrics of one server. */
export interface RpcMetrics {
  /** The server's own registry (never prom-client's global one, so servers in one process do not mix). */
  readonly registry: Registry;
  observe(rpc: RpcObservation): void;
  /** The text exposition format, for GET /metrics. */
  render(): Promise<string>;
  readonly contentType: string;
}

/**
 * Creates the metrics of a server named `server` (added to every series as the `server` label):
 * - `rpc_server_requests_total{service,method,code}`: RPCs finished, by outcome;
 * - `rpc_server_duration_seconds{service,method,code}`: their latency, from request headers to last byte;
 * - prom-client's default process metrics (CPU, memory, event loop lag, GC), prefixed `process_`/`nodejs_`.
 */
export function createRpcMetrics(server: string): RpcMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ server });
  collectDefaultMetrics({ register: registry });
  const labelNames = ["service", "method", "code"] as const;
  const requests = new Counter({
    name: "rpc_server_requests_total",
    help: "RPCs finished by the server, by service, method and status code.",
    labelNames,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "rpc_server_duration_seconds",
    help: "RPC latency, from request headers to the last response byte.",
    labelNames,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  return {
    registry,
    contentType: registry.contentType,
    observe({ service, method, code, durationMs }) {
      const labels = { service, method, code };
      requests.inc(labels);
      duration.observe(labels, durationMs / 1000);
    },
    render: () => registry.metrics(),
  };
}
