/**
 * Opening the job server for a command: resolve its URL and address and the signing key (in that
 * order, so a missing address fails before a password prompt), run the command's calls on one
 * session, close it.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { KeyPair } from "@tessera/identity/keys";
import { type JobServerClient, openJobServerClient } from "@tessera/sdk/job-server-client";
import type { CliContext } from "./cli-context.js";
import { resolveJobServerAddress, resolveJobServerUrl, resolveKeyName } from "./job-options.js";
import { loadSigningKey } from "./signing-key.js";

/** Options every job and artifact command takes. */
export interface JobServerOptions {
  readonly key?: string;
  readonly passwordStdin?: boolean;
  readonly jobServerUrl?: string;
  readonly jobServerAddress?: string;
  readonly json?: boolean;
}

/**
 * Runs `use` with a signed client of the job server and the caller's key pair, and closes the
 * client however `use` ends. An `unavailable` error (nothing answers) gets a hint to start the
 * network.
 */
export async function withJobServer<T>(
  context: CliContext,
  options: JobServerOptions,
  use: (jobServer: JobServerClient, keyPair: KeyPair) => Promise<T>,
): Promise<T> {
  const baseUrl = resolveJobServerUrl(options.jobServerUrl, context.env);
  const address = await resolveJobServerAddress({
    option: options.jobServerAddress,
    env: context.env,
  });
  const keyName = resolveKeyName(options.key, context.env);
  const keyPair = await loadSigningKey(context, keyName, options);
  const jobServer = openJobServerClient({ baseUrl, address, keyPair });
  try {
    return await use(jobServer, keyPair);
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.Unavailable) {
      throw new ConnectError(
        `${error.rawMessage} (is the network running? "pnpm start" runs a local one)`,
        error.code,
      );
    }
    throw error;
  } finally {
    jobServer.close();
  }
}
