import { create } from "@bufbuild/protobuf";
import { createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  Health,
  HealthCheckResponse_ServingStatus,
} from "@tessera/proto/grpc/health/v1/health_pb.js";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
} from "@tessera/proto/grpc/reflection/v1/reflection_pb.js";

/** A gRPC (HTTP/2) client transport whose session a test can close, so no handle outlives it. */
export interface ClosableTransport {
  readonly transport: Transport;
  /** Closes the HTTP/2 session; safe to call twice. */
  close(): void;
}

/** Creates a gRPC-protocol transport to `baseUrl` with a session the caller closes. */
export function createClosableGrpcTransport(baseUrl: string): ClosableTransport {
  const sessionManager = new Http2SessionManager(baseUrl);
  return {
    transport: createGrpcTransport({ baseUrl, sessionManager }),
    close: () => sessionManager.abort(),
  };
}

/** Lists the fully-qualified service names a server offers, through gRPC server reflection v1. */
export async function listServices(baseUrl: string): Promise<string[]> {
  const { transport, close } = createClosableGrpcTransport(baseUrl);
  try {
    const client = createClient(ServerReflection, transport);
    const request = create(ServerReflectionRequestSchema, {
      messageRequest: { case: "listServices", value: "" },
    });
    async function* requests() {
      yield request;
    }
    for await (const response of client.serverReflectionInfo(requests())) {
      if (response.messageResponse.case === "listServicesResponse") {
        return response.messageResponse.value.service.map((s) => s.name).sort();
      }
    }
    throw new Error("reflection stream ended without a list of services");
  } finally {
    close();
  }
}

/** Asks grpc.health.v1.Health/Check for `service` ("" = the whole server) and returns the status name. */
export async function checkHealth(baseUrl: string, service = ""): Promise<string> {
  const { transport, close } = createClosableGrpcTransport(baseUrl);
  try {
    const response = await createClient(Health, transport).check({ service });
    return HealthCheckResponse_ServingStatus[response.status];
  } finally {
    close();
  }
}
