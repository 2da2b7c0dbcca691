/**
 * The job and artifact commands' arguments: where the job server is, who signs, and the list
 * filters, checked before anything is sent.
 */

import type { JobState, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { parseArtifactReference } from "@tessera/sdk/artifact-uri";
import { JOB_STATE_NAMES, JOB_TYPE_NAMES, lookupName } from "@tessera/sdk/job-names";
import { CliError } from "./cli-error.js";
import { resolveServiceAddress, type ServiceAddressSources } from "./service-address.js";
import { CLIENT_ID_PATTERN } from "./wallet-options.js";

/** The job server URL when neither --job-server-url nor TESSERA_JOB_SERVER_URL is given (the devnet's). */
export const DEFAULT_JOB_SERVER_URL = "http://127.0.0.1:7001";

/** Largest --page-size: the job server's own limit. */
export const MAX_PAGE_SIZE = 100;

/**
 * The job server's URL: `option` (--job-server-url), else TESSERA_JOB_SERVER_URL, else
 * {@link DEFAULT_JOB_SERVER_URL}.
 */
export function resolveJobServerUrl(
  option: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string {
  return option || env.TESSERA_JOB_SERVER_URL || DEFAULT_JOB_SERVER_URL;
}

/**
 * The job server's address, the target of every signed call: --job-server-address, else
 * TESSERA_JOB_SERVER_ADDRESS, else the address in `<data dir>/job-server/key.json` (the devnet's;
 * see resolveServiceAddress).
 * @throws CliError when none gives a valid address.
 */
export function resolveJobServerAddress(sources: ServiceAddressSources): Promise<string> {
  return resolveServiceAddress(
    {
      dataFolder: "job-server",
      label: "job server",
      option: "--job-server-address",
      variable: "TESSERA_JOB_SERVER_ADDRESS",
    },
    sources,
  );
}

/**
 * The key that signs: --key, else TESSERA_KEY.
 * @throws CliError when neither is set.
 */
export function resolveKeyName(
  option: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string {
  const name = option || env.TESSERA_KEY;
  if (!name) {
    throw new CliError(
      'no key to sign with: pass --key <name> or set TESSERA_KEY (create one with "tessera keys new <name>")',
    );
  }
  return name;
}

/**
 * A job id as given on the command line (1-128 of [A-Za-z0-9._:-]).
 * @throws CliError otherwise.
 */
export function parseJobId(text: string, what = "the job id"): string {
  if (!CLIENT_ID_PATTERN.test(text)) {
    throw new CliError(
      `${what} must be 1 to 128 of A-Z, a-z, 0-9, ".", "_", ":" and "-", got ${JSON.stringify(text)}`,
    );
  }
  return text;
}

/**
 * A --state filter: pending, queued, assigned, running, validating, completed, failed, cancelled.
 * @throws CliError for another word, listing these.
 */
export function parseStateFilter(text: string): JobState {
  const state = lookupName(JOB_STATE_NAMES, text);
  if (state === undefined) {
    throw new CliError(
      `unknown --state ${JSON.stringify(text)}: use ${[...JOB_STATE_NAMES.keys()].join(", ")}`,
    );
  }
  return state;
}

/**
 * A --type filter: training, inference, evaluation, preprocessing.
 * @throws CliError for another word, listing these.
 */
export function parseTypeFilter(text: string): JobType {
  const type = lookupName(JOB_TYPE_NAMES, text);
  if (type === undefined) {
    throw new CliError(
      `unknown --type ${JSON.stringify(text)}: use ${[...JOB_TYPE_NAMES.keys()].join(", ")}`,
    );
  }
  return type;
}

/**
 * A --page-size: an integer from 1 to {@link MAX_PAGE_SIZE}.
 * @throws CliError otherwise.
 */
export function parsePageSize(text: string): number {
  if (!/^[0-9]+$/.test(text)) throw new CliError(`--page-size must be a whole number, got ${text}`);
  const size = Number(text);
  if (size < 1 || size > MAX_PAGE_SIZE) {
    throw new CliError(`--page-size must be between 1 and ${MAX_PAGE_SIZE}, got ${text}`);
  }
  return size;
}

/**
 * The artifact id in `text`, a bare id or `artifact://<id>`.
 * @throws CliError otherwise.
 */
export function parseArtifactId(text: string): string {
  const id = parseArtifactReference(text);
  if (id === undefined) {
    throw new CliError(
      `not an artifact: ${JSON.stringify(text)}; give its id or artifact://<id> (as a job's result lists it)`,
    );
  }
  return id;
}
