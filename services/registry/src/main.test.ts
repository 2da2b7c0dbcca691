import { describe } from "node:test";
import { fileURLToPath } from "node:url";
import { standaloneServiceSuite } from "@tessera/testkit/standalone-service-suite";
import { registryServicesByRole } from "./server.js";

const entry = fileURLToPath(new URL("../dist/main.js", import.meta.url));

for (const role of ["registry", "validator"] as const) {
  describe(`registry binary in the ${role} role`, () => {
    standaloneServiceSuite({
      entry,
      env: { REGISTRY_ROLE: role },
      services: registryServicesByRole[role],
      expectUnimplemented: true,
    });
  });
}
