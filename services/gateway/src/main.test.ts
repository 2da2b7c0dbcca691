import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { standaloneServiceSuite } from "@tessera/testkit/standalone-service-suite";
import { gatewayServices } from "./server.js";

const dataDir = await mkdtemp(join(tmpdir(), "gateway-main-"));
after(() => rm(dataDir, { recursive: true, force: true }));

standaloneServiceSuite({
  entry: fileURLToPath(new URL("../dist/main.js", import.meta.url)),
  services: gatewayServices,
  env: { DATA_DIR: dataDir },
  expectUnimplemented: false,
});
