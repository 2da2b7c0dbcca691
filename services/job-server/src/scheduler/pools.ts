/**
 * Memory pools: where a job's memory is reserved on a node. A job that requires no device or the
 * CPU runs on the host and uses the node's RAM; a job that requires an accelerator (CUDA, OpenCL,
 * Metal, ROCm) runs on one device of that kind and uses that device's memory.
 */
import { DeviceType } from "@tessera/proto/tessera/common/v1/common_pb.js";

/** The pool id of host RAM (used by DEVICE_TYPE_UNSPECIFIED and DEVICE_TYPE_CPU jobs). */
export const HOST_POOL = 0;

/**
 * The pool a job requiring `device` draws memory from: {@link HOST_POOL} for UNSPECIFIED and CPU
 * (every node has a CPU and RAM), otherwise the device type's own number.
 */
export function poolOf(device: DeviceType): number {
  return device === DeviceType.UNSPECIFIED || device === DeviceType.CPU ? HOST_POOL : device;
}

const DEVICE_NAMES: Readonly<Record<number, string>> = {
  [DeviceType.UNSPECIFIED]: "any",
  [DeviceType.CPU]: "CPU",
  [DeviceType.CUDA]: "CUDA",
  [DeviceType.OPENCL]: "OpenCL",
  [DeviceType.METAL]: "Metal",
  [DeviceType.ROCM]: "ROCm",
};

/** A short human name of a device type ("CUDA", "ROCm"); unknown values read "device type 9". */
export function deviceName(device: DeviceType): string {
  return DEVICE_NAMES[device] ?? `device type ${device}`;
}

/** What the memory of `pool` is called in messages: "RAM" or "CUDA memory". */
export function poolMemoryName(pool: number): string {
  return pool === HOST_POOL ? "RAM" : `${deviceName(pool)} memory`;
}
