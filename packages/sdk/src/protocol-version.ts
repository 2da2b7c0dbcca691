/**
 * The Tessera protocol version the SDK speaks; every request it builds carries it.
 */
import { create } from "@bufbuild/protobuf";
import {
  type ProtocolVersion,
  ProtocolVersionSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";

/** 1.0.0: a server with another major version refuses the SDK's requests (failed_precondition). */
export const SDK_PROTOCOL_VERSION: ProtocolVersion = create(ProtocolVersionSchema, {
  major: 1,
  minor: 0,
  patch: 0,
});
