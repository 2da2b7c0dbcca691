import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type NodeRecord,
  NodeRecordSchema,
  NodeType,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { KeyPair } from "./keys.js";

/** A filled-in NodeRecord for `keyPair`, unsealed (no proof of work, no signature). */
export function sampleNodeRecord(keyPair: KeyPair): NodeRecord {
  return create(NodeRecordSchema, {
    protocolVersion: { major: 1, minor: 0, patch: 0 },
    address: keyPair.address,
    publicKey: keyPair.publicKey,
    nodeType: NodeType.COMPUTE,
    name: "gpu-box",
    softwareVersion: "0.1.0",
    endpoint: { host: "10.0.0.7", port: 7000 },
    region: "eu-west",
    cpuCores: 16,
    ramTotalBytes: 64n * 1024n ** 3n,
    capabilities: ["training", "inference"],
    runtimes: ["onnxruntime"],
    supportedFormats: ["onnx"],
    maxModelSizeBytes: 2n * 1024n ** 3n,
    pricePerHour: "1500000",
    maxConcurrentJobs: 4,
    sequence: 7n,
    issuedAt: timestampFromDate(new Date("2025-01-01T00:00:00Z")),
  });
}
