/**
 * Live measurements of the machine for the node's load: free RAM, CPU utilisation, and the
 * devices with their free memory (GPUs re-queried in the background, never on the caller's path).
 */
import { loadavg } from "node:os";
import type { Device } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { LiveLoad } from "../agent/node-agent.js";
import { detectCpuAndMemory, detectGpus, type Hardware } from "./hardware.js";
import { hardwareDevices } from "./node-record.js";

/** Options of {@link createMachineMonitor}. */
export interface MachineMonitorOptions {
  /** The hardware found at start. */
  readonly hardware: Hardware;
  /** The nvidia-smi command (see detectGpus). */
  readonly nvidiaSmi: string;
  /** How often GPUs are re-queried when there are any; default 30,000 ms. */
  readonly gpuRefreshMs?: number | undefined;
}

/** Measures the machine; `close()` stops the background GPU queries. */
export interface MachineMonitor {
  measure(): LiveLoad;
  close(): void;
}

/** A monitor of this machine. */
export function createMachineMonitor(options: MachineMonitorOptions): MachineMonitor {
  let gpus = options.hardware.gpus;
  let timer: NodeJS.Timeout | undefined;
  if (gpus.length > 0) {
    timer = setInterval(() => {
      void detectGpus({ command: options.nvidiaSmi }).then((found) => {
        if (found.gpus.length > 0) gpus = found.gpus;
      });
    }, options.gpuRefreshMs ?? 30_000);
    timer.unref();
  }
  return {
    measure() {
      const now = detectCpuAndMemory();
      const devices: Device[] = hardwareDevices({ ...now, gpus });
      return {
        machineFreeBytes: Number(now.ramAvailableBytes),
        devices,
        cpuUtilization: (loadavg()[0] ?? 0) / Math.max(1, now.cpuCores),
      };
    },
    close() {
      clearInterval(timer);
    },
  };
}
