/** Retrying calls to the job server that failed for reasons a resend can fix. */
import { Code, ConnectError } from "@connectrpc/connect";
import { Backoff, sleep } from "./backoff.js";

/**
 * Whether a failed call may succeed when sent again unchanged: the peer was unreachable, busy or
 * too slow, or it refused a nonce that another call overtook (a refusal without side effect).
 */
export function isRetryable(error: unknown): boolean {
  const { code, rawMessage } = ConnectError.from(error);
  switch (code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.ResourceExhausted:
    case Code.Aborted:
    case Code.Unknown:
    case Code.Internal:
      return true;
    case Code.Unauthenticated:
      return /nonce/i.test(rawMessage);
    default:
      return false;
  }
}

/** Options of {@link withRetries}. */
export interface RetryOptions {
  /** Attempts in all, at least 1; default 5. */
  readonly attempts?: number | undefined;
  /** Stops retrying (the last error is thrown) when aborted. */
  readonly signal?: AbortSignal | undefined;
  /** First delay between attempts; default 250 ms. */
  readonly initialDelayMs?: number | undefined;
}

/**
 * Calls `call` until it succeeds, fails with an error that is not {@link isRetryable}, or the
 * attempts run out; throws the last error.
 */
export async function withRetries<T>(
  call: () => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const attempts = Math.max(1, options.attempts ?? 5);
  const backoff = new Backoff({ initialMs: options.initialDelayMs ?? 250, maxMs: 10_000 });
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= attempts || !isRetryable(error) || options.signal?.aborted) throw error;
      await sleep(backoff.next(), options.signal);
    }
  }
}
