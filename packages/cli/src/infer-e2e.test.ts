// `tessera models` and `tessera infer` end to end: the CLI against a REAL gateway serving a free
// subnet (no registry, no wallet) and a compute node hosting the example classifier
// (examples/models/catalog.json), each its own process started from its built binary. The
// gateway's address is found the devnet way, from its key file under TESSERA_DATA_DIR.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createKeystore } from "@tessera/identity/keystore";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { readModelCatalog } from "@tessera/ml/model-catalog";
import { ort } from "@tessera/ml/onnxruntime";
import { type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";
import { runInProcess } from "./test-cli-context.js";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const catalog = join(repoRoot, "examples", "models", "catalog.json");
const gatewayEntry = join(repoRoot, "services", "gateway", "dist", "main.js");
const computeNodeEntry = join(repoRoot, "services", "compute-node", "dist", "main.js");
const skip =
  [gatewayEntry, computeNodeEntry].find((entry) => !existsSync(entry)) === undefined
    ? false
    : "the gateway and compute node must be built first";

describe("tessera infer and models against a real gateway and node", { timeout: 120_000 }, () => {
  let dir: string;
  let gateway: SpawnedService;
  let node: SpawnedService;
  let env: Record<string, string>;
  const tessera = (args: string[]) => runInProcess(args, env);

  before(async () => {
    if (skip) return;
    dir = await mkdtemp(join(tmpdir(), "tessera-cli-infer-e2e-"));
    await createKeystore({ homeDir: dir }).create("alice");
    const dataDir = join(dir, "data");
    const { keyPair: gatewayKey } = await loadOrCreateServiceKey({
      path: join(dataDir, "gateway", "key.json"),
      name: "gateway",
    });
    const common = { HOST: "127.0.0.1", POW_DIFFICULTY: "4", SHUTDOWN_GRACE_MS: "1000" };
    gateway = await spawnService({
      entry: gatewayEntry,
      env: { ...common, DATA_DIR: join(dataDir, "gateway"), MODELS_FILE: catalog },
      startTimeoutMs: 30_000,
    });
    node = await spawnService({
      entry: computeNodeEntry,
      env: {
        ...common,
        DATA_DIR: join(dataDir, "compute-node"),
        NVIDIA_SMI: "none",
        MODELS_FILE: catalog,
        GATEWAY_URL: gateway.url,
        GATEWAY_ADDRESS: gatewayKey.address,
      },
      startTimeoutMs: 30_000,
    });
    env = {
      TESSERA_HOME: dir,
      TESSERA_KEY: "alice",
      TESSERA_DATA_DIR: dataDir,
      TESSERA_GATEWAY_URL: gateway.url,
    };
    // The node registers its model with the gateway shortly after it starts.
    for (const deadline = Date.now() + 30_000; ; ) {
      const run = await tessera(["models", "--available"]);
      if (run.code === 0 && run.stdout.includes("blobs-classifier")) break;
      if (Date.now() > deadline) throw new Error(`the model never became available: ${run.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });

  after(async () => {
    await node?.stop();
    await gateway?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("lists the hosted model with its input and output formats", { skip }, async () => {
    const run = await tessera(["models"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^blobs-classifier {2}Blobs classifier v1 \(tabular\)$/m);
    assert.match(run.stdout, /in: input float32\[-1,2\] {2}out: output float32\[-1,3\]/);
    assert.match(run.stdout, /1 node\(s\) online, free, backward/);
  });

  it("runs the model on inline JSON and on a file, printing what onnxruntime computes", {
    skip,
  }, async () => {
    const rows = [
      [1.2, -1.1],
      [-2.2, -1.9],
    ];
    const inline = await tessera(["infer", "blobs-classifier", JSON.stringify({ input: rows })]);
    assert.equal(inline.code, 0, inline.stderr);
    assert.match(inline.stderr, /: COMPLETED on tsr1/);
    const printed = JSON.parse(inline.stdout) as { output: number[][] };

    const [model] = await readModelCatalog(catalog);
    assert.ok(model?.descriptor.content !== undefined);
    const session = await ort.InferenceSession.create(
      await readFile(fileURLToPath(model.descriptor.content.uri)),
    );
    const out = await session.run({
      input: new ort.Tensor("float32", Float32Array.from(rows.flat()), [2, 2]),
    });
    await session.release();
    const expected = out.output?.data as Float32Array;
    assert.deepEqual(
      printed.output.flat().map((v) => v.toFixed(6)),
      [...expected].map((v) => v.toFixed(6)),
    );

    const file = join(dir, "rows.json");
    await writeFile(file, JSON.stringify(rows));
    const fromFile = await tessera(["infer", "blobs-classifier", file, "--json"]);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    const result = JSON.parse(fromFile.stdout) as { outcome: string; outputTensors: unknown[] };
    assert.equal(result.outcome, "INFERENCE_OUTCOME_SUCCEEDED");
    assert.equal(result.outputTensors.length, 1);
  });

  it("a bad input or an unknown model exits 1 with the gateway's reason", { skip }, async () => {
    const wide = await tessera(["infer", "blobs-classifier", "[[1, 2, 3]]"]);
    assert.equal(wide.code, 1);
    assert.match(wide.stderr, /^tessera: error: /m);
    const unknown = await tessera(["infer", "no-such-model", "[[1, 2]]"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /not_found/);
    const notJson = await tessera(["infer", "blobs-classifier", "{oops"]);
    assert.equal(notJson.code, 1);
    assert.match(notJson.stderr, /not JSON/);
  });
});
