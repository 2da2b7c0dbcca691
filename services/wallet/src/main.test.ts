import { fileURLToPath } from "node:url";
import { standaloneServiceSuite } from "@tessera/testkit/standalone-service-suite";
import { walletServices } from "./server.js";

standaloneServiceSuite({
  entry: fileURLToPath(new URL("../dist/main.js", import.meta.url)),
  services: walletServices,
  expectUnimplemented: true,
});
