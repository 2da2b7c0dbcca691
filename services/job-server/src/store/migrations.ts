import { moneyColumn } from "@tessera/store";
import type { Kysely, Migration } from "kysely";

/**
 * Migrations of the job queue's tables ({@link JobServerTables} in ./tables.ts). Merge them into
 * the `migrations` of the job server's store together with the nonce store's and the artifact
 * store's: `{ ...nonceStoreMigrations, ...jobServerMigrations, ...artifactMigrations }`.
 */
export const jobServerMigrations: Readonly<Record<string, Migration>> = {
  "job-server/0001-create-queue": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("job_record")
        .addColumn("job_id", "text", (col) => col.primaryKey())
        .addColumn("owner_address", "text", (col) => col.notNull())
        .addColumn("spec", "text", (col) => col.notNull())
        .addColumn("job_type", "integer", (col) => col.notNull())
        .addColumn("priority", "integer", (col) => col.notNull())
        .addColumn("state", "integer", (col) => col.notNull())
        .addColumn("attempt", "integer", (col) => col.notNull())
        .addColumn("max_attempts", "integer", (col) => col.notNull())
        .addColumn("progress", "double precision", (col) => col.notNull())
        .addColumn("current_epoch", "integer", (col) => col.notNull())
        .addColumn("current_round", "integer", (col) => col.notNull())
        .addColumn("metrics", "text", (col) => col.notNull())
        .addColumn("failure_reason", "integer", (col) => col.notNull())
        .addColumn("error_message", "text", (col) => col.notNull())
        .addColumn("lease_id", "text")
        .addColumn("lease_node", "text")
        .addColumn("lease_expires_at_ms", "bigint")
        .addColumn("assigned_at_ms", "bigint")
        .addColumn("started_at_ms", "bigint")
        .addColumn("ended_at_ms", "bigint")
        .addColumn("queued_at_ms", "bigint", (col) => col.notNull())
        .addColumn("created_at_ms", "bigint", (col) => col.notNull())
        .addColumn("updated_at_ms", "bigint", (col) => col.notNull())
        .addColumn("expires_at_ms", "bigint", (col) => col.notNull())
        .addColumn("max_duration_ms", "bigint", (col) => col.notNull())
        .addColumn("not_before_ms", "bigint", (col) => col.notNull())
        .addColumn("payment_amount", "text", (col) => col.notNull())
        .addColumn("escrow_id", "text", (col) => col.notNull())
        .addColumn("payer_address", "text", (col) => col.notNull())
        .addColumn("approval", "text")
        .addColumn("result", "text")
        .addColumn("settlement", "text")
        .addColumn("settlement_tx_id", "text", (col) => col.notNull())
        .addColumn("settlement_retry_at_ms", "bigint", (col) => col.notNull())
        .addColumn("refund_reason", "text", (col) => col.notNull())
        .addColumn("update_seq", "bigint", (col) => col.notNull())
        .execute();
      await db.schema
        .createIndex("job_record_queue")
        .on("job_record")
        .columns(["state", "priority", "queued_at_ms"])
        .execute();
      await db.schema
        .createIndex("job_record_by_owner")
        .on("job_record")
        .columns(["owner_address", "created_at_ms", "job_id"])
        .execute();
      await db.schema
        .createIndex("job_record_by_owner_state")
        .on("job_record")
        .columns(["owner_address", "state"])
        .execute();
      await db.schema
        .createIndex("job_record_by_lease_node")
        .on("job_record")
        .columns(["lease_node"])
        .execute();
      await db.schema
        .createIndex("job_record_settlement")
        .on("job_record")
        .columns(["settlement", "settlement_retry_at_ms"])
        .execute();

      await db.schema
        .createTable("job_update")
        .addColumn("job_id", "text", (col) => col.notNull())
        .addColumn("seq", "bigint", (col) => col.notNull())
        .addColumn("created_at_ms", "bigint", (col) => col.notNull())
        .addColumn("body", "text", (col) => col.notNull())
        .addPrimaryKeyConstraint("job_update_pk", ["job_id", "seq"])
        .execute();

      await db.schema
        .createTable("job_input")
        .addColumn("job_id", "text", (col) => col.notNull())
        .addColumn("digest", "text", (col) => col.notNull())
        .addPrimaryKeyConstraint("job_input_pk", ["job_id", "digest"])
        .execute();
      await db.schema.createIndex("job_input_by_digest").on("job_input").column("digest").execute();

      await db.schema
        .createTable("job_lease")
        .addColumn("lease_id", "text", (col) => col.primaryKey())
        .addColumn("job_id", "text", (col) => col.notNull())
        .addColumn("node_address", "text", (col) => col.notNull())
        .addColumn("attempt", "integer", (col) => col.notNull())
        .addColumn("state", "text", (col) => col.notNull())
        .addColumn("accepted", "integer", (col) => col.notNull())
        .addColumn("issued_at_ms", "bigint", (col) => col.notNull())
        .addColumn("expires_at_ms", "bigint", (col) => col.notNull())
        .addColumn("ended_at_ms", "bigint")
        .addColumn("reason", "text", (col) => col.notNull())
        .addColumn("notified", "integer", (col) => col.notNull())
        .addColumn("compute_time_ms", "bigint", (col) => col.notNull())
        .execute();
      await db.schema.createIndex("job_lease_by_job").on("job_lease").column("job_id").execute();
      await db.schema
        .createIndex("job_lease_by_node")
        .on("job_lease")
        .columns(["node_address", "state"])
        .execute();

      await db.schema
        .createTable("job_node")
        .addColumn("address", "text", (col) => col.primaryKey())
        .addColumn("record", "text", (col) => col.notNull())
        .$call(moneyColumn("sequence"))
        .addColumn("registered_at_ms", "bigint", (col) => col.notNull())
        .addColumn("last_seen_ms", "bigint", (col) => col.notNull())
        .addColumn("load", "text")
        .addColumn("capacity", "integer", (col) => col.notNull())
        .addColumn("online", "integer", (col) => col.notNull())
        .addColumn("reputation", "double precision", (col) => col.notNull())
        .addColumn("banned_until_ms", "bigint")
        .addColumn("jobs_completed", "bigint", (col) => col.notNull())
        .addColumn("jobs_failed", "bigint", (col) => col.notNull())
        .addColumn("compute_time_ms", "bigint", (col) => col.notNull())
        .$call(moneyColumn("earned_amount"))
        .execute();
    },
  },
};
