import { moneyColumn } from "@tessera/store";
import { type Kysely, type Migration, sql } from "kysely";

/**
 * Migrations of the ledger's tables ({@link WalletTables} in ./tables.ts). Merge them into the
 * `migrations` of the wallet's store together with the nonce store's:
 * `{ ...nonceStoreMigrations, ...walletMigrations }`.
 */
export const walletMigrations: Readonly<Record<string, Migration>> = {
  "wallet/0001-create-ledger": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("wallet_account")
        .addColumn("account_id", "text", (col) => col.primaryKey())
        .$call(moneyColumn("debits"))
        .$call(moneyColumn("credits"))
        .addColumn("created_at_ms", "bigint", (col) => col.notNull())
        // Fixed-width money text compares numerically: the database itself refuses a negative
        // balance for every account but the faucet (the mint).
        .addCheckConstraint(
          "wallet_account_not_negative",
          sql`account_id = 'faucet' or credits >= debits`,
        )
        .execute();
      await db.schema
        .createTable("wallet_transaction")
        .addColumn("transaction_id", "text", (col) => col.primaryKey())
        .addColumn("seq", "bigint", (col) => col.notNull().unique())
        .addColumn("kind", "integer", (col) => col.notNull())
        .addColumn("debit_account", "text", (col) => col.notNull())
        .addColumn("credit_account", "text", (col) => col.notNull())
        .$call(moneyColumn("amount"))
        .addColumn("reference_id", "text", (col) => col.notNull())
        .addColumn("memo", "text", (col) => col.notNull())
        .addColumn("created_at_ms", "bigint", (col) => col.notNull())
        .addColumn("request_hash", "text")
        .addCheckConstraint("wallet_transaction_two_accounts", sql`debit_account <> credit_account`)
        .execute();
      await db.schema
        .createIndex("wallet_transaction_by_debit")
        .on("wallet_transaction")
        .columns(["debit_account", "seq"])
        .execute();
      await db.schema
        .createIndex("wallet_transaction_by_credit")
        .on("wallet_transaction")
        .columns(["credit_account", "seq"])
        .execute();
      await db.schema
        .createTable("wallet_escrow")
        .addColumn("escrow_id", "text", (col) => col.primaryKey())
        .addColumn("job_id", "text", (col) => col.notNull())
        .addColumn("payer_address", "text", (col) => col.notNull())
        .addColumn("arbiter_address", "text", (col) => col.notNull())
        .$call(moneyColumn("amount"))
        .addColumn("expires_at_ms", "bigint", (col) => col.notNull())
        .addColumn("state", "integer", (col) => col.notNull())
        .addColumn("payment_tree", "text")
        .addColumn("created_at_ms", "bigint", (col) => col.notNull())
        .addColumn("settled_at_ms", "bigint")
        .$call(moneyColumn("released_amount"))
        .$call(moneyColumn("refunded_amount"))
        .addColumn("request_hash", "text", (col) => col.notNull())
        .addColumn("release_hash", "text")
        .execute();
      await db.schema
        .createIndex("wallet_escrow_by_payer")
        .on("wallet_escrow")
        .columns(["payer_address", "state"])
        .execute();
      await db.schema
        .createTable("wallet_stake")
        .addColumn("stake_id", "text", (col) => col.primaryKey())
        .addColumn("staker_address", "text", (col) => col.notNull())
        .addColumn("arbiter_address", "text", (col) => col.notNull())
        .$call(moneyColumn("amount"))
        .$call(moneyColumn("slashed_amount"))
        .addColumn("state", "integer", (col) => col.notNull())
        .addColumn("created_at_ms", "bigint", (col) => col.notNull())
        .addColumn("updated_at_ms", "bigint", (col) => col.notNull())
        .addColumn("request_hash", "text", (col) => col.notNull())
        .execute();
      await db.schema
        .createIndex("wallet_stake_by_staker")
        .on("wallet_stake")
        .columns(["staker_address", "state"])
        .execute();
      await db.schema
        .createTable("wallet_counter")
        .addColumn("name", "text", (col) => col.primaryKey())
        .addColumn("value", "bigint", (col) => col.notNull())
        .execute();
      await sql`insert into wallet_counter (name, value) values ('transaction', 0)`.execute(db);
    },
  },
};
