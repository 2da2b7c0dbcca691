/**
 * The few logger methods the store uses; a pino logger (or a child of one) fits as is. The store
 * logs applied migrations, transaction retries and pool errors, never SQL parameters or URLs.
 */
export interface StoreLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
  debug(fields: object, message: string): void;
}
