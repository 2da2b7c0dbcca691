import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { ServiceServer } from "./server.js";
import { startTestServer } from "./test-service.js";

const run = promisify(execFile);
const buf = fileURLToPath(new URL("../node_modules/.bin/buf", import.meta.url));
const healthProto = fileURLToPath(
  new URL("../../../proto/grpc/health/v1/health.proto", import.meta.url),
);

type CheckCallback = (err: grpc.ServiceError | null, res?: { status: string }) => void;
interface HealthClient extends grpc.Client {
  Check(req: { service: string }, callback: CheckCallback): void;
}
type HealthClientConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => HealthClient;

/** Runs `buf curl` over gRPC with HTTP/2 prior knowledge and no schema (reflection only). */
async function bufCurl(...args: string[]): Promise<string> {
  const { stdout } = await run(buf, [
    "curl",
    "--protocol",
    "grpc",
    "--http2-prior-knowledge",
    ...args,
  ]);
  return stdout;
}

describe("clients nobody here wrote", () => {
  let server: ServiceServer;
  before(async () => {
    ({ server } = await startTestServer());
  });
  after(() => server.close());

  it("@grpc/grpc-js with the repo's health.proto gets SERVING", async () => {
    const definition = protoLoader.loadSync(healthProto, { enums: String });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { health: { v1: { Health: HealthClientConstructor } } };
    };
    const client = new loaded.grpc.health.v1.Health(
      `127.0.0.1:${server.port}`,
      grpc.credentials.createInsecure(),
    );
    try {
      const res = await new Promise<{ status: string } | undefined>((resolve, reject) =>
        client.Check({ service: "" }, (err, r) => (err ? reject(err) : resolve(r))),
      );
      assert.equal(res?.status, "SERVING");
    } finally {
      client.close();
    }
  });

  it("buf curl lists the services through reflection (v1 and v1alpha)", async () => {
    for (const reflect of ["grpc-v1", "grpc-v1alpha"]) {
      const out = await bufCurl("--reflect-protocol", reflect, "--list-services", server.url);
      assert.deepEqual(out.trim().split("\n"), [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "tessera.runtime.test.v1.TestService",
      ]);
    }
  });

  it("buf curl calls Health.Check and a service whose file imports a well-known type", async () => {
    const check = await bufCurl(`${server.url}/grpc.health.v1.Health/Check`);
    assert.deepEqual(JSON.parse(check), { status: "SERVING" });
    const echo = await bufCurl(
      "-d",
      '{"text":"hi"}',
      `${server.url}/tessera.runtime.test.v1.TestService/Echo`,
    );
    assert.equal((JSON.parse(echo) as { text: string }).text, "hi");
  });
});
