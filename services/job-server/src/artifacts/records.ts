/** Artifact rows (./tables.ts) as wire records (tessera.job.v1.Artifact). */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ContentRefSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type Artifact,
  ArtifactSchema,
} from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import type { Selectable } from "kysely";
import { ARTIFACT_PROTOCOL_VERSION } from "./protocol-version.js";
import type { ArtifactTable } from "./tables.js";

/** The URI scheme of artifacts held by the job server: "artifact://<artifact_id>". */
export const ARTIFACT_URI_PREFIX = "artifact://";

/** The ContentRef uri of an artifact. */
export function artifactUri(artifactId: string): string {
  return `${ARTIFACT_URI_PREFIX}${artifactId}`;
}

/** The wire record of an artifact row. */
export function artifactFromRow(row: Selectable<ArtifactTable>): Artifact {
  return create(ArtifactSchema, {
    protocolVersion: ARTIFACT_PROTOCOL_VERSION,
    artifactId: row.artifact_id,
    name: row.name,
    content: create(ContentRefSchema, {
      digest: row.digest,
      sizeBytes: BigInt(row.size_bytes),
      uri: artifactUri(row.artifact_id),
      mediaType: row.media_type,
    }),
    ownerAddress: row.owner_address,
    jobId: row.job_id,
    createdAt: timestampFromMs(Number(row.created_at_ms)),
  });
}
