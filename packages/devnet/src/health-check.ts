import { setTimeout as delay } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  Health,
  HealthCheckResponse_ServingStatus,
} from "@tessera/proto/grpc/health/v1/health_pb.js";

/** A serving status name of grpc.health.v1: "SERVING", "NOT_SERVING", "UNKNOWN", ... */
export type ServingStatusName = keyof typeof HealthCheckResponse_ServingStatus;

/** Options of {@link checkHealth}. */
export interface CheckHealthOptions {
  /** The service name to ask about; default "" (the whole server). */
  service?: string;
  /** Deadline of the call; default 1000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Calls grpc.health.v1.Health/Check over gRPC (HTTP/2 cleartext) at `baseUrl` and returns the
 * serving status name. The HTTP/2 session is closed before it returns, so no handle outlives it.
 * Rejects with the ConnectError when the server does not answer (connection refused, deadline).
 */
export async function checkHealth(
  baseUrl: string,
  options: CheckHealthOptions = {},
): Promise<ServingStatusName> {
  const sessionManager = new Http2SessionManager(baseUrl);
  try {
    const client = createClient(Health, createGrpcTransport({ baseUrl, sessionManager }));
    const response = await client.check(
      { service: options.service ?? "" },
      { timeoutMs: options.timeoutMs ?? 1000, ...(options.signal && { signal: options.signal }) },
    );
    return HealthCheckResponse_ServingStatus[response.status] as ServingStatusName;
  } finally {
    sessionManager.abort();
  }
}

/** Options of {@link waitUntilServing}. */
export interface WaitUntilServingOptions {
  /** Give up after this long; default 30000 ms. */
  timeoutMs?: number;
  /** Pause between attempts; default 100 ms. */
  intervalMs?: number;
  /** Stops waiting (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * Polls grpc.health.v1 Check at `baseUrl` until the server reports SERVING. Rejects when
 * `timeoutMs` passes, naming the last status or error seen, or when `signal` aborts.
 */
export async function waitUntilServing(
  baseUrl: string,
  options: WaitUntilServingOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let lastSeen = "no answer";
  for (;;) {
    options.signal?.throwIfAborted();
    const remainingMs = deadline - Date.now();
    try {
      const status = await checkHealth(baseUrl, {
        timeoutMs: Math.max(1, Math.min(1000, remainingMs)),
        ...(options.signal && { signal: options.signal }),
      });
      if (status === "SERVING") return;
      lastSeen = `status ${status}`;
    } catch (error) {
      options.signal?.throwIfAborted();
      lastSeen = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() >= deadline) {
      throw new Error(`${baseUrl} was not SERVING after ${timeoutMs} ms (last: ${lastSeen})`);
    }
    await delay(options.intervalMs ?? 100, undefined, options.signal && { signal: options.signal });
  }
}
