import type { Store } from "@tessera/store";
import type { Transaction } from "kysely";
import { RaceLostError } from "./errors.js";

/** Tries of {@link transactionWithRaceRetry} before the race is reported as an error. */
const MAX_RACE_ATTEMPTS = 3;

/**
 * Runs `fn` in one transaction of `store`, and again (up to 3 times in all) when it throws
 * {@link RaceLostError}: a concurrent transaction inserted the key this one meant to create
 * (`INSERT … ON CONFLICT DO NOTHING` inserted nothing), so the next try reads that row instead.
 */
export async function transactionWithRaceRetry<DB, T>(
  store: Store<DB>,
  fn: (trx: Transaction<DB>) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await store.transaction(fn);
    } catch (error) {
      if (!(error instanceof RaceLostError) || attempt >= MAX_RACE_ATTEMPTS) throw error;
    }
  }
}
