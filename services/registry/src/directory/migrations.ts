import { moneyColumn } from "@tessera/store";
import type { Kysely, Migration } from "kysely";

/**
 * Migrations of the directory and validator tables ({@link RegistryTables}). Merge them into the
 * `migrations` of the registry's store together with the subnets' and the nonce store's:
 * `{ ...nonceStoreMigrations, ...registryMigrations, ...subnetMigrations }`.
 */
export const registryMigrations: Readonly<Record<string, Migration>> = {
  "registry/0001-create-directory": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("registry_node")
        .addColumn("address", "text", (col) => col.primaryKey())
        .addColumn("record", "text", (col) => col.notNull())
        .$call(moneyColumn("sequence"))
        .addColumn("node_type", "integer", (col) => col.notNull())
        .addColumn("subnet_id", "text", (col) => col.notNull())
        .addColumn("registered_at_ms", "bigint", (col) => col.notNull())
        .addColumn("updated_at_ms", "bigint", (col) => col.notNull())
        .addColumn("deregistered_at_ms", "bigint")
        .addColumn("deregister_reason", "text")
        .addColumn("reputation", "double precision", (col) => col.notNull())
        .addColumn("jobs_completed", "bigint", (col) => col.notNull())
        .addColumn("compute_ms", "bigint", (col) => col.notNull())
        .addColumn("strikes", "integer", (col) => col.notNull())
        .addColumn("bans", "integer", (col) => col.notNull())
        .addColumn("banned_until_ms", "bigint")
        .$call(moneyColumn("stake_amount"))
        .addColumn("online", "integer", (col) => col.notNull())
        .addColumn("online_since_ms", "bigint")
        .addColumn("online_total_ms", "bigint", (col) => col.notNull())
        .addColumn("last_heartbeat_at_ms", "bigint")
        .addColumn("load", "text")
        .execute();
      await db.schema
        .createIndex("registry_node_by_type")
        .on("registry_node")
        .columns(["node_type", "subnet_id"])
        .execute();
      await db.schema
        .createIndex("registry_node_by_heartbeat")
        .on("registry_node")
        .columns(["online", "last_heartbeat_at_ms"])
        .execute();
      await db.schema
        .createTable("registry_node_event")
        .addColumn("reporter", "text", (col) => col.notNull())
        .addColumn("event_id", "text", (col) => col.notNull())
        .addColumn("node_address", "text", (col) => col.notNull())
        .addColumn("kind", "integer", (col) => col.notNull())
        .addColumn("fingerprint", "text", (col) => col.notNull())
        .addColumn("recorded_at_ms", "bigint", (col) => col.notNull())
        .addPrimaryKeyConstraint("registry_node_event_pk", ["reporter", "event_id"])
        .execute();
      await db.schema
        .createTable("registry_validator")
        .addColumn("address", "text", (col) => col.primaryKey())
        .addColumn("public_key", "text", (col) => col.notNull())
        .addColumn("endpoint", "text", (col) => col.notNull())
        .$call(moneyColumn("stake_amount"))
        .addColumn("stake_id", "text", (col) => col.notNull())
        .addColumn("reputation", "double precision", (col) => col.notNull())
        .addColumn("status", "integer", (col) => col.notNull())
        .addColumn("registered_at_ms", "bigint", (col) => col.notNull())
        .addColumn("updated_at_ms", "bigint", (col) => col.notNull())
        .addColumn("reason", "text")
        .execute();
    },
  },
  "registry/0002-stake-releases": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("registry_stake_release")
        .addColumn("stake_id", "text", (col) => col.primaryKey())
        .addColumn("validator_address", "text", (col) => col.notNull())
        .addColumn("reason", "text", (col) => col.notNull())
        .addColumn("due_at_ms", "bigint", (col) => col.notNull())
        .addColumn("created_at_ms", "bigint", (col) => col.notNull())
        .addColumn("released_at_ms", "bigint")
        .execute();
      await db.schema
        .createIndex("registry_stake_release_owed")
        .on("registry_stake_release")
        .columns(["released_at_ms", "due_at_ms"])
        .execute();
    },
  },
};
