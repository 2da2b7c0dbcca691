import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  detectCpuAndMemory,
  detectGpus,
  detectHardware,
  NvidiaSmiOutputError,
  parseNvidiaSmiCsv,
} from "./hardware.js";

const MIB = 1024n * 1024n;

/** What `nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv,noheader,nounits` prints on a two-GPU machine. */
const TWO_GPUS = [
  "NVIDIA A100-SXM4-40GB, 40960, 40327, 535.104.05",
  "NVIDIA GeForce RTX 3090, 24576, 23800, 535.104.05",
  "",
].join("\n");

describe("parseNvidiaSmiCsv", () => {
  test("reads one GPU per line with memory in MiB", () => {
    assert.deepEqual(parseNvidiaSmiCsv(TWO_GPUS), [
      {
        name: "NVIDIA A100-SXM4-40GB",
        totalMemoryBytes: 40960n * MIB,
        freeMemoryBytes: 40327n * MIB,
        driverVersion: "535.104.05",
      },
      {
        name: "NVIDIA GeForce RTX 3090",
        totalMemoryBytes: 24576n * MIB,
        freeMemoryBytes: 23800n * MIB,
        driverVersion: "535.104.05",
      },
    ]);
  });

  test("memory the driver does not report reads as 0; a comma in a name is kept", () => {
    const [gpu] = parseNvidiaSmiCsv("Tesla T4, rev 2, [N/A], [Not Supported], 470.57\r\n");
    assert.deepEqual(gpu, {
      name: "Tesla T4, rev 2",
      totalMemoryBytes: 0n,
      freeMemoryBytes: 0n,
      driverVersion: "470.57",
    });
  });

  test("no output means no GPUs", () => {
    assert.deepEqual(parseNvidiaSmiCsv(""), []);
    assert.deepEqual(parseNvidiaSmiCsv("\n\n"), []);
  });

  test("a line it cannot read is an error naming the line", () => {
    assert.throws(() => parseNvidiaSmiCsv("No devices were found"), NvidiaSmiOutputError);
    assert.throws(() => parseNvidiaSmiCsv("GPU, lots, 12, 535"), /bad memory value "lots"/);
  });
});

describe("detectGpus", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-nvidia-smi-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function script(name: string, body: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, `#!/bin/sh\n${body}\n`);
    await chmod(path, 0o755);
    return path;
  }

  test("a machine without nvidia-smi has no GPUs and no problem", async () => {
    assert.deepEqual(await detectGpus({ command: join(dir, "no-such-nvidia-smi") }), { gpus: [] });
  });

  test("runs the command with the CSV query and reads its GPUs", async () => {
    // The fake prints the sample only when asked the exact query the node depends on.
    const command = await script(
      "nvidia-smi",
      [
        'if [ "$1" = "--query-gpu=name,memory.total,memory.free,driver_version" ] && [ "$2" = "--format=csv,noheader,nounits" ]; then',
        `  printf '${TWO_GPUS.replaceAll("\n", "\\n")}'`,
        "else echo unexpected arguments >&2; exit 2; fi",
      ].join("\n"),
    );
    const { gpus, problem } = await detectGpus({ command });
    assert.equal(problem, undefined);
    assert.deepEqual(
      gpus.map((gpu) => [gpu.name, gpu.totalMemoryBytes]),
      [
        ["NVIDIA A100-SXM4-40GB", 40960n * MIB],
        ["NVIDIA GeForce RTX 3090", 24576n * MIB],
      ],
    );
  });

  test("a failing nvidia-smi (no driver) means no GPUs, with the problem named", async () => {
    const command = await script(
      "broken-nvidia-smi",
      'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver." >&2; exit 9',
    );
    const { gpus, problem } = await detectGpus({ command });
    assert.deepEqual(gpus, []);
    assert.match(problem ?? "", /couldn't communicate with the NVIDIA driver/);
  });

  test("'none' skips detection", async () => {
    assert.deepEqual(await detectGpus({ command: "none" }), { gpus: [] });
  });
});

test("the CPU and RAM of this machine are found", async () => {
  const cpu = detectCpuAndMemory();
  assert.ok(cpu.cpuCores >= 1);
  assert.ok(cpu.cpuModel.length > 0);
  assert.ok(cpu.ramTotalBytes > 0n);
  assert.ok(cpu.ramAvailableBytes <= cpu.ramTotalBytes);
  const { hardware, gpuProblem } = await detectHardware({ command: "none" });
  assert.equal(gpuProblem, undefined);
  assert.deepEqual(hardware.gpus, []);
});
