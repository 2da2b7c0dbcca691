import { fileURLToPath } from "node:url";
import { standaloneServiceSuite } from "@tessera/testkit/standalone-service-suite";
import { gatewayServices } from "./server.js";

standaloneServiceSuite({
  entry: fileURLToPath(new URL("../dist/main.js", import.meta.url)),
  services: gatewayServices,
  expectUnimplemented: true,
});
