import { create } from "@bufbuild/protobuf";
import {
  type ProtocolVersion,
  ProtocolVersionSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";

/** The Tessera protocol version the compute node speaks (1.0.0); every request carries it. */
export const NODE_PROTOCOL_VERSION: ProtocolVersion = create(ProtocolVersionSchema, {
  major: 1,
  minor: 0,
  patch: 0,
});

/** The node's software version, published in its record. */
export const NODE_SOFTWARE_VERSION = "0.1.0";
