/**
 * The job server's artifact store and ArtifactService, for the server wiring: open the store with
 * {@link artifactMigrations} merged into its migrations (and {@link ArtifactTables} in its
 * database type), then `createArtifactStore` and `router.service(ArtifactService,
 * createArtifactService({ artifacts, canRead, canUpload }))` behind the verifying interceptor.
 */

export {
  type ArtifactServiceDeps,
  createArtifactService,
  toConnectError,
  type UploadTarget,
} from "./artifact-service.js";
export {
  type ArtifactChunk,
  type ArtifactStore,
  type ArtifactStoreOptions,
  type BeginUploadInput,
  type ByteRange,
  type ChunkInput,
  type CommitInput,
  createArtifactStore,
  DEFAULT_MAX_ARTIFACT_BYTES,
  DEFAULT_MAX_CHUNK_BYTES,
  DEFAULT_SWEEP_INTERVAL_MS,
  DEFAULT_UPLOAD_TTL_MS,
  type SweepResult,
  type UploadInfo,
  type UploadProgress,
} from "./artifact-store.js";
export { ArtifactError, type ArtifactErrorKind } from "./errors.js";
export { artifactMigrations } from "./migrations.js";
export { ARTIFACT_PROTOCOL_VERSION } from "./protocol-version.js";
export { ARTIFACT_URI_PREFIX, artifactUri } from "./records.js";
export type { ArtifactTable, ArtifactTables, ArtifactUploadTable } from "./tables.js";
