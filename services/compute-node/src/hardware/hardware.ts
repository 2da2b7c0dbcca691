/**
 * What the machine offers: its CPU (model, cores), its RAM and its NVIDIA GPUs. GPUs are listed
 * by running `nvidia-smi`; a machine without the command (or without a working driver) simply
 * has none.
 */
import { execFile } from "node:child_process";
import { availableParallelism, cpus, freemem, totalmem } from "node:os";

/** One NVIDIA GPU as `nvidia-smi` reports it. */
export interface GpuInfo {
  /** Model name, e.g. "NVIDIA A100-SXM4-40GB". */
  readonly name: string;
  readonly totalMemoryBytes: bigint;
  readonly freeMemoryBytes: bigint;
  readonly driverVersion: string;
}

/** The machine's hardware at one moment. */
export interface Hardware {
  /** CPU model name, e.g. "AMD EPYC 7B13"; "unknown CPU" when the OS does not say. */
  readonly cpuModel: string;
  /** Logical cores the process may use. */
  readonly cpuCores: number;
  readonly ramTotalBytes: bigint;
  /** RAM free for new work now. */
  readonly ramAvailableBytes: bigint;
  readonly gpus: readonly GpuInfo[];
}

/** The GPUs found, and why there are none when the query failed (for a log line). */
export interface GpuDetection {
  readonly gpus: readonly GpuInfo[];
  /** Set when the command exists but failed or printed something unreadable. */
  readonly problem?: string | undefined;
}

/** The query whose output {@link parseNvidiaSmiCsv} reads (memory in MiB, no header). */
export const NVIDIA_SMI_ARGS = [
  "--query-gpu=name,memory.total,memory.free,driver_version",
  "--format=csv,noheader,nounits",
] as const;

const MIB = 1024n * 1024n;

/** Thrown by {@link parseNvidiaSmiCsv} for a line it cannot read. */
export class NvidiaSmiOutputError extends Error {
  override readonly name = "NvidiaSmiOutputError";
}

/**
 * The GPUs in `nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version
 * --format=csv,noheader,nounits` output: one line per GPU, memory in MiB. A memory field that the
 * driver does not report ("[N/A]", "[Not Supported]") reads as 0. Blank lines are skipped.
 * @throws NvidiaSmiOutputError for a line without four fields or with a malformed number.
 */
export function parseNvidiaSmiCsv(text: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === "") continue;
    const fields = line.split(",").map((field) => field.trim());
    if (fields.length < 4) {
      throw new NvidiaSmiOutputError(`expected 4 fields in ${JSON.stringify(line)}`);
    }
    // A model name with a comma in it keeps its commas: the last three fields are fixed.
    const [total, free, driverVersion] = fields.slice(-3) as [string, string, string];
    gpus.push({
      name: fields.slice(0, -3).join(", "),
      totalMemoryBytes: mibField(total, line),
      freeMemoryBytes: mibField(free, line),
      driverVersion,
    });
  }
  return gpus;
}

function mibField(field: string, line: string): bigint {
  if (field.startsWith("[")) return 0n;
  if (!/^\d+(?:\.\d+)?$/.test(field)) {
    throw new NvidiaSmiOutputError(
      `bad memory value ${JSON.stringify(field)} in ${JSON.stringify(line)}`,
    );
  }
  return BigInt(Math.floor(Number(field))) * MIB;
}

/** Options of {@link detectGpus}. */
export interface DetectGpusOptions {
  /** The command to run; default "nvidia-smi". "none" or "" skips detection. */
  readonly command?: string | undefined;
  /** Longest the command may run; default 10,000 ms. */
  readonly timeoutMs?: number | undefined;
}

/**
 * The machine's NVIDIA GPUs, by running `nvidia-smi`. Never rejects: a missing command means no
 * GPUs (no problem), a failing one no GPUs with the problem named.
 */
export function detectGpus(options: DetectGpusOptions = {}): Promise<GpuDetection> {
  const command = options.command ?? "nvidia-smi";
  if (command === "" || command === "none") return Promise.resolve({ gpus: [] });
  return new Promise((resolve) => {
    execFile(
      command,
      [...NVIDIA_SMI_ARGS],
      { timeout: options.timeoutMs ?? 10_000, windowsHide: true },
      (error, stdout, stderr) => {
        if (error !== null) {
          if ((error as NodeJS.ErrnoException).code === "ENOENT") return resolve({ gpus: [] });
          const detail = String(stderr).trim().split("\n")[0] || error.message;
          return resolve({ gpus: [], problem: `${command} failed: ${detail}` });
        }
        try {
          resolve({ gpus: parseNvidiaSmiCsv(String(stdout)) });
        } catch (parseError) {
          resolve({ gpus: [], problem: `${command}: ${(parseError as Error).message}` });
        }
      },
    );
  });
}

/** The machine's CPU and RAM now (no GPUs; see {@link detectHardware}). */
export function detectCpuAndMemory(): Omit<Hardware, "gpus"> {
  const model = cpus()[0]?.model.trim();
  return {
    cpuModel: model !== undefined && model !== "" ? model : "unknown CPU",
    cpuCores: availableParallelism(),
    ramTotalBytes: BigInt(totalmem()),
    ramAvailableBytes: BigInt(freemem()),
  };
}

/** The machine's CPU, RAM and GPUs, with the GPU problem (if any) for a log line. */
export async function detectHardware(
  options: DetectGpusOptions = {},
): Promise<{ hardware: Hardware; gpuProblem: string | undefined }> {
  const { gpus, problem } = await detectGpus(options);
  return { hardware: { ...detectCpuAndMemory(), gpus }, gpuProblem: problem };
}
