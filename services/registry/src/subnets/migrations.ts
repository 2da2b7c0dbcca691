import { moneyColumn } from "@tessera/store";
import { type Kysely, type Migration, sql } from "kysely";

/**
 * Migrations of the subnet tables ({@link SubnetTables}); merge them with `registryMigrations`
 * into the registry store's migrations.
 */
export const subnetMigrations: Readonly<Record<string, Migration>> = {
  "subnets/0001-create-subnets": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("registry_fee_quote")
        .addColumn("quote_id", "text", (col) => col.primaryKey())
        .addColumn("gateway_address", "text", (col) => col.notNull())
        .$call(moneyColumn("network_fee"))
        .addColumn("fee_address", "text", (col) => col.notNull())
        .addColumn("models_digest", "text", (col) => col.notNull())
        .addColumn("created_at_ms", "bigint", (col) => col.notNull())
        .addColumn("expires_at_ms", "bigint", (col) => col.notNull())
        .addColumn("used_by_subnet_id", "bigint")
        .execute();
      await db.schema
        .createTable("registry_subnet_counter")
        .addColumn("name", "text", (col) => col.primaryKey())
        .addColumn("last_id", "bigint", (col) => col.notNull())
        .execute();
      await sql`insert into registry_subnet_counter (name, last_id) values ('subnet', 0)`.execute(
        db,
      );
      await db.schema
        .createTable("registry_subnet")
        .addColumn("subnet_id", "bigint", (col) => col.primaryKey())
        .addColumn("gateway_address", "text", (col) => col.notNull())
        .addColumn("status", "integer", (col) => col.notNull())
        .addColumn("payment_transfer_id", "text", (col) => col.notNull().unique())
        .addColumn("fee_quote_id", "text", (col) => col.notNull().unique())
        .addColumn("request_digest", "text", (col) => col.notNull())
        .addColumn("metadata", "text", (col) => col.notNull())
        .addColumn("created_at_ms", "bigint", (col) => col.notNull())
        .addColumn("updated_at_ms", "bigint", (col) => col.notNull())
        .execute();
      await db.schema
        .createIndex("registry_subnet_by_gateway")
        .on("registry_subnet")
        .column("gateway_address")
        .execute();
      await db.schema
        .createTable("registry_subnet_model")
        .addColumn("subnet_id", "bigint", (col) => col.notNull())
        .addColumn("model_id", "text", (col) => col.notNull())
        .addPrimaryKeyConstraint("registry_subnet_model_pk", ["subnet_id", "model_id"])
        .execute();
      await db.schema
        .createIndex("registry_subnet_model_by_model")
        .on("registry_subnet_model")
        .column("model_id")
        .execute();
    },
  },
};
