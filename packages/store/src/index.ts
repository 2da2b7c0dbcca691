export type { Kysely, Migration, Transaction } from "kysely";
export { StoreConflictError, StoreMigrationError, StoreMisuseError } from "./errors.js";
export type { StoreMigrations } from "./migrations.js";
export {
  fromMoney,
  MONEY_DIGITS,
  MONEY_MAX,
  type Money,
  type MoneyColumnOptions,
  moneyColumn,
  toMoney,
} from "./money.js";
export {
  createNonceStore,
  type NonceStore,
  type NonceStoreTables,
  nonceStoreMigrations,
} from "./nonce-store.js";
export {
  type LockOptions,
  openStore,
  type Store,
  type StoreDialect,
  type StoreOptions,
  type TransactionOptions,
} from "./store.js";
export type { StoreLogger } from "./store-logger.js";
