/**
 * The tables the artifact store owns, as Kysely sees them; {@link artifactMigrations} creates them.
 *
 * Conventions (as in the wallet and registry): times are Unix milliseconds and sizes are bytes, in
 * `bigint` columns (PostgreSQL hands them back as strings, SQLite as numbers: read them through
 * `Number`). The bytes themselves live on disk, one file per SHA-256 digest (./blob-files.ts).
 *
 * @see ./migrations.ts
 */
import type { ColumnType } from "kysely";

/** A 64-bit integer column: written as a number, read as a number (SQLite) or string (pg). */
export type Int64Column = ColumnType<number | string, number, number>;

/** Whether an upload still takes chunks or has become an artifact. */
export type UploadState = "open" | "committed";

/**
 * One upload, open or committed, keyed by its uploader and the uploader's own id. Open uploads
 * are deleted (with their partial file) once `expires_at_ms` passes; committed ones are kept until
 * then so that a repeated CommitUpload answers the same artifact.
 */
export interface ArtifactUploadTable {
  owner_address: string;
  upload_id: string;
  name: string;
  media_type: string;
  size_bytes: Int64Column;
  /** The digest BeginUpload announced ("sha256:<hex>"), or "" when none was given. */
  digest: string;
  /** "" when none. */
  job_id: string;
  /** "" when none. */
  lease_id: string;
  /** Bytes durably stored in the partial file. */
  committed_offset: Int64Column;
  state: UploadState;
  /** File name of the partial content inside `<dataDir>/artifacts/uploads`. */
  partial_file: string;
  /** The artifact it became; null while open. */
  artifact_id: string | null;
  created_at_ms: Int64Column;
  /** Slides forward with every BeginUpload and chunk while open. */
  expires_at_ms: Int64Column;
}

/** One committed, immutable artifact; its bytes are the blob named by `digest`. */
export interface ArtifactTable {
  artifact_id: string;
  name: string;
  media_type: string;
  /** "sha256:<64 lowercase hex>". */
  digest: string;
  size_bytes: Int64Column;
  owner_address: string;
  /** "" when none. */
  job_id: string;
  created_at_ms: Int64Column;
}

/** Every table of the artifact store. Add it to the job server database's interface. */
export interface ArtifactTables {
  artifact_upload: ArtifactUploadTable;
  artifact: ArtifactTable;
}
