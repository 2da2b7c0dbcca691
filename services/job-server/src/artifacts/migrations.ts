import type { Kysely, Migration } from "kysely";

/**
 * Migrations of the artifact store's tables ({@link ArtifactTables} in ./tables.ts). Merge them
 * into the `migrations` of the job server's store with every other module's:
 * `{ ...nonceStoreMigrations, ...artifactMigrations, ... }`.
 */
export const artifactMigrations: Readonly<Record<string, Migration>> = {
  "artifacts/0001-create-artifact-tables": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("artifact_upload")
        .addColumn("owner_address", "text", (col) => col.notNull())
        .addColumn("upload_id", "text", (col) => col.notNull())
        .addColumn("name", "text", (col) => col.notNull())
        .addColumn("media_type", "text", (col) => col.notNull())
        .addColumn("size_bytes", "bigint", (col) => col.notNull())
        .addColumn("digest", "text", (col) => col.notNull())
        .addColumn("job_id", "text", (col) => col.notNull())
        .addColumn("lease_id", "text", (col) => col.notNull())
        .addColumn("committed_offset", "bigint", (col) => col.notNull())
        .addColumn("state", "text", (col) => col.notNull())
        .addColumn("partial_file", "text", (col) => col.notNull().unique())
        .addColumn("artifact_id", "text")
        .addColumn("created_at_ms", "bigint", (col) => col.notNull())
        .addColumn("expires_at_ms", "bigint", (col) => col.notNull())
        .addPrimaryKeyConstraint("artifact_upload_pk", ["owner_address", "upload_id"])
        .execute();
      await db.schema
        .createIndex("artifact_upload_by_expiry")
        .on("artifact_upload")
        .columns(["expires_at_ms"])
        .execute();
      await db.schema
        .createTable("artifact")
        .addColumn("artifact_id", "text", (col) => col.primaryKey())
        .addColumn("name", "text", (col) => col.notNull())
        .addColumn("media_type", "text", (col) => col.notNull())
        .addColumn("digest", "text", (col) => col.notNull())
        .addColumn("size_bytes", "bigint", (col) => col.notNull())
        .addColumn("owner_address", "text", (col) => col.notNull())
        .addColumn("job_id", "text", (col) => col.notNull())
        .addColumn("created_at_ms", "bigint", (col) => col.notNull())
        .execute();
      await db.schema
        .createIndex("artifact_by_owner_digest")
        .on("artifact")
        .columns(["owner_address", "digest"])
        .execute();
      await db.schema.createIndex("artifact_by_job").on("artifact").columns(["job_id"]).execute();
    },
  },
};
