import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { standaloneServiceSuite } from "@tessera/testkit/standalone-service-suite";
import { computeNodeServices } from "./server.js";

const dataDir = mkdtempSync(join(tmpdir(), "tessera-compute-node-main-"));
after(() => rmSync(dataDir, { recursive: true, force: true }));

// TensorService is implemented (src/tensor/); its behaviour is tested in tensor-service.test.ts.
standaloneServiceSuite({
  entry: fileURLToPath(new URL("../dist/main.js", import.meta.url)),
  services: computeNodeServices,
  env: {
    DATA_DIR: dataDir,
    POW_DIFFICULTY: "8",
    NVIDIA_SMI: "none",
  },
  expectUnimplemented: false,
});
