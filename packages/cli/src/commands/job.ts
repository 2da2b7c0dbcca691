/**
 * `tessera job ...`: submit a job from a YAML spec (uploading its files and funding its escrow),
 * follow it, read its status, cancel it and list jobs, talking to the job server over gRPC with
 * every call signed by the caller's key.
 */
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { create, toJson } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import type { JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { JobState } from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  CancelJobResponseSchema,
  GetJobStatusResponseSchema,
  ListJobsResponseSchema,
  StreamJobUpdatesResponseSchema,
  SubmitJobResponseSchema,
} from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { type Escrow, EscrowState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { parseJobSpecYaml } from "@tessera/sdk/job-spec-yaml";
import { type SubmitEvent, type SubmittedJob, submitJob } from "@tessera/sdk/job-submit";
import { type JobOutcome, watchJob } from "@tessera/sdk/job-watch";
import { SDK_PROTOCOL_VERSION } from "@tessera/sdk/protocol-version";
import { openServiceClient, type ServiceClient } from "@tessera/sdk/service-client";
import type { Command } from "commander";
import type { CliContext } from "../cli-context.js";
import { CliError } from "../cli-error.js";
import {
  formatBytes,
  formatCancelled,
  formatJobList,
  formatJobStatus,
  formatState,
  formatSubmitted,
} from "../job-format.js";
import {
  DEFAULT_JOB_SERVER_URL,
  MAX_PAGE_SIZE,
  parseJobId,
  parsePageSize,
  parseStateFilter,
  parseTypeFilter,
} from "../job-options.js";
import { createJobProgress } from "../job-progress.js";
import { type JobServerOptions, withJobServer } from "../job-server-connection.js";
import { escrowStateName, formatJson, formatTime } from "../wallet-format.js";
import { parseAddress, resolveWalletAddress, resolveWalletUrl } from "../wallet-options.js";

interface SubmitOptions extends JobServerOptions {
  readonly wait?: boolean;
  readonly jobId?: string;
  readonly walletUrl?: string;
  readonly walletAddress?: string;
}

interface CancelOptions extends JobServerOptions {
  readonly reason?: string;
}

interface ListOptions extends JobServerOptions {
  readonly state?: JobState;
  readonly type?: JobType;
  readonly pageSize?: number;
  readonly pageToken?: string;
  readonly owner?: string;
}

/** Where the commands find the job server; shown under each command's --help. */
export const JOB_SERVER_HELP = `
The job server is at --job-server-url, else $TESSERA_JOB_SERVER_URL, else ${DEFAULT_JOB_SERVER_URL}.
Calls are signed for the job server's address: --job-server-address, else
$TESSERA_JOB_SERVER_ADDRESS, else the address in its key file <data dir>/job-server/key.json, where
<data dir> is $TESSERA_DATA_DIR, or the devnet's default <repo>/.tessera-data when that file
exists. Every call is signed with --key <name> (default $TESSERA_KEY), read from $TESSERA_HOME/keys;
an encrypted key's password is asked for on the terminal, or read from stdin with
--password-stdin. Errors print one line, "tessera: error: <code>: <message>", and exit 1.`;

/** Adds the `job` command group to `program`. */
export function registerJobCommands(program: Command, context: CliContext): void {
  const job = program
    .command("job")
    .description(
      "submit batch jobs (training, inference, evaluation, preprocessing) and follow them",
    )
    .addHelpText("after", JOB_SERVER_HELP);

  jobServerOptions(
    job
      .command("submit")
      .description("submit a job from a YAML spec: upload its files, fund its escrow, queue it")
      .argument("<spec>", "the job spec, a YAML file (format: examples/README.md)"),
  )
    .option("--wait", "follow the job until it ends; exit 0 only if it completes")
    .option("--job-id <id>", "use this job id instead of the spec's job_id (or a new UUID)")
    .option(
      "--wallet-url <url>",
      "the wallet's URL, for a paid job (default: $TESSERA_WALLET_URL or the devnet's)",
    )
    .option("--wallet-address <address>", "the wallet server's address, for a paid job")
    .addHelpText(
      "after",
      "\nSubmitting the same spec with the same job id again returns the job made the first time: files\nalready uploaded are not sent again, and a paid job's escrow is found, not funded twice.\nWithout job_id in the spec (or --job-id), each submission makes a new job. With --wait, progress\ngoes to stderr and the outcome to stdout (with --json, one JSON object: status and result).",
    )
    .action(async (specPath: string, options: SubmitOptions) => {
      const parsed = await readSpec(specPath);
      if (options.jobId !== undefined) {
        parsed.spec.jobId = parseJobId(options.jobId, "--job-id");
      }
      const jobId = parsed.spec.jobId;
      // Addresses first: a missing one fails before any password prompt.
      const walletTarget =
        parsed.payment === undefined
          ? undefined
          : await resolveWalletAddress({ option: options.walletAddress, env: context.env });
      await withJobServer(context, options, async (jobServer, keyPair) => {
        let wallet: ServiceClient<typeof WalletService> | undefined;
        if (walletTarget !== undefined) {
          wallet = openServiceClient(WalletService, {
            baseUrl: resolveWalletUrl(options.walletUrl, context.env),
            signer: { keyPair, target: walletTarget },
          });
        }
        try {
          let escrow: Escrow | undefined;
          let submitted: SubmittedJob;
          try {
            submitted = await submitJob(jobServer, parsed, {
              wallet: wallet?.client,
              onEvent: (event) => {
                if (event.kind === "escrow-ready") escrow = event.escrow;
                context.stderr.write(describeEvent(event));
              },
            });
          } catch (error) {
            throw withEscrowHint(error, escrow);
          }
          if (!options.wait) {
            context.stdout.write(
              options.json
                ? formatJson(
                    SubmitJobResponseSchema,
                    create(SubmitJobResponseSchema, {
                      job: submitted.job,
                      created: submitted.created,
                      ...(submitted.nodeAssignment
                        ? { nodeAssignment: submitted.nodeAssignment }
                        : {}),
                    }),
                  )
                : formatSubmitted(submitted),
            );
            return;
          }
          if (!options.json) context.stdout.write(`${formatSubmitted(submitted)}\n`);
          await follow(context, jobServer.jobs, jobId, {
            output: options.json ? "outcome-json" : "text",
            totalEpochs: parsed.spec.epochs || undefined,
          });
        } finally {
          wallet?.close();
        }
      });
    });

  jobServerOptions(
    job
      .command("watch")
      .description("follow a job until it ends: live progress, per-epoch metrics, then its result")
      .argument("<job-id>", "the job's id"),
  )
    .addHelpText(
      "after",
      "\nOn a terminal a progress bar shows the state, epoch and latest metrics; otherwise one line is\nprinted per change. With --json each update is printed as one JSON line. Exits 0 only if the\njob completes; Ctrl-C stops following (the job keeps running).",
    )
    .action(async (jobIdText: string, options: JobServerOptions) => {
      const jobId = parseJobId(jobIdText);
      await withJobServer(context, options, (jobServer) =>
        follow(context, jobServer.jobs, jobId, { output: options.json ? "updates-json" : "text" }),
      );
    });

  jobServerOptions(
    job
      .command("status")
      .description("print a job's state, progress, metrics and, once it has one, its result")
      .argument("<job-id>", "the job's id"),
  ).action(async (jobIdText: string, options: JobServerOptions) => {
    const jobId = parseJobId(jobIdText);
    const response = await withJobServer(context, options, (jobServer) =>
      jobServer.jobs.getJobStatus({ protocolVersion: SDK_PROTOCOL_VERSION, jobId }),
    );
    if (options.json) {
      context.stdout.write(formatJson(GetJobStatusResponseSchema, response));
    } else if (response.status) {
      context.stdout.write(formatJobStatus(response.status, response.result));
    } else {
      throw new CliError(`the job server answered without the status of job ${jobId}`);
    }
  });

  jobServerOptions(
    job
      .command("cancel")
      .description("cancel a job that has not ended; its escrow is refunded")
      .argument("<job-id>", "the job's id"),
  )
    .option("--reason <text>", "why, passed on to the node (at most 1024 bytes)")
    .action(async (jobIdText: string, options: CancelOptions) => {
      const jobId = parseJobId(jobIdText);
      const response = await withJobServer(context, options, (jobServer) =>
        jobServer.jobs.cancelJob({
          protocolVersion: SDK_PROTOCOL_VERSION,
          jobId,
          reason: options.reason ?? "",
        }),
      );
      context.stdout.write(
        options.json
          ? formatJson(CancelJobResponseSchema, response)
          : formatCancelled(jobId, response),
      );
    });

  jobServerOptions(
    job.command("list").description("list your jobs, newest first, one page at a time"),
  )
    .option(
      "--state <state>",
      "only jobs in this state: pending, queued, assigned, running, validating, completed, failed, cancelled",
      parseStateFilter,
    )
    .option(
      "--type <type>",
      "only jobs of this type: training, inference, evaluation, preprocessing",
      parseTypeFilter,
    )
    .option(
      "--page-size <n>",
      `jobs per page, 1-${MAX_PAGE_SIZE} (default: the job server's, 50)`,
      parsePageSize,
    )
    .option("--page-token <token>", "the next page token a previous page printed")
    .option("--owner <address>", "another owner's jobs (operators only)")
    .action(async (options: ListOptions) => {
      const owner = options.owner === undefined ? "" : parseAddress(options.owner, "--owner");
      const page = await withJobServer(context, options, (jobServer) =>
        jobServer.jobs.listJobs({
          protocolVersion: SDK_PROTOCOL_VERSION,
          ownerAddress: owner,
          pageSize: options.pageSize ?? 0,
          pageToken: options.pageToken ?? "",
          jobType: options.type ?? 0,
          state: options.state ?? JobState.UNSPECIFIED,
        }),
      );
      context.stdout.write(
        options.json ? formatJson(ListJobsResponseSchema, page) : formatJobList(page),
      );
    });
}

/** Adds the options every job and artifact command takes; `json` says what --json prints. */
export function jobServerOptions(
  command: Command,
  json = "print the job server's response as JSON instead of text",
): Command {
  return command
    .option("--key <name>", "the key that signs (default: $TESSERA_KEY)")
    .option("--password-stdin", "read the key's password from stdin")
    .option(
      "--job-server-url <url>",
      "the job server's URL (default: $TESSERA_JOB_SERVER_URL or the devnet's)",
    )
    .option(
      "--job-server-address <address>",
      "the job server's address, the target of signed calls",
    )
    .option("--json", json)
    .addHelpText("after", JOB_SERVER_HELP);
}

/** Reads and parses a spec file; its relative file paths are relative to its folder. */
async function readSpec(specPath: string) {
  const absolute = resolve(specPath);
  let text: string;
  try {
    text = await readFile(absolute, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new CliError(`no such job spec: ${specPath}`);
    if (code === "EISDIR") throw new CliError(`${specPath} is a directory, not a job spec`);
    throw error;
  }
  return parseJobSpecYaml(text, dirname(absolute), { source: specPath });
}

/**
 * A failure after the escrow was funded says where the money is: still held for this job, used
 * by running the same command again (the escrow is found, not funded twice).
 */
function withEscrowHint(error: unknown, escrow: Escrow | undefined): unknown {
  if (escrow === undefined || escrow.state !== EscrowState.HELD) return error;
  const hint = `escrow ${escrow.escrowId} holds ${escrow.amount} for this job until ${formatTime(escrow.expiresAt)}; run the same command again to use it`;
  if (error instanceof ConnectError) {
    return new ConnectError(`${error.rawMessage} (${hint})`, error.code);
  }
  if (error instanceof Error) return new CliError(`${error.message} (${hint})`);
  return error;
}

/** One stderr line per step of a submission. */
function describeEvent(event: SubmitEvent): string {
  switch (event.kind) {
    case "upload-started":
      return `uploading ${event.file.field}: ${event.file.name} (${formatBytes(event.file.sizeBytes)})\n`;
    case "upload-progress":
      return "";
    case "uploaded":
      return `uploaded ${event.file.field}: ${event.artifact.content?.uri ?? event.artifact.artifactId}\n`;
    case "output-resolved":
      return `${event.output.field}: output "${event.output.artifact}" of job ${event.output.jobId} is ${event.content.uri || event.content.digest}\n`;
    case "escrow-ready":
      return `escrow ${event.escrow.escrowId} holds ${event.escrow.amount} (${event.created ? "created" : `found, ${escrowStateName(event.escrow.state)}`})\n`;
  }
}

/**
 * What {@link follow} prints on stdout: "text", the outcome as `name: value` lines and tables;
 * "outcome-json", the outcome as one JSON object (a GetJobStatusResponse: status and result);
 * "updates-json", every update as one JSON line (and no progress on stderr).
 */
type FollowOutput = "text" | "outcome-json" | "updates-json";

/**
 * Follows a job to its end: progress on stderr (a bar on a terminal, lines otherwise), then the
 * outcome on stdout as `output` says. Ctrl-C stops following.
 * @throws CliError unless the job completed (after printing the outcome).
 */
async function follow(
  context: CliContext,
  jobs: Parameters<typeof watchJob>[0],
  jobId: string,
  options: { output: FollowOutput; totalEpochs?: number | undefined },
): Promise<JobOutcome> {
  const controller = new AbortController();
  const removeInterrupt = context.onInterrupt?.(() =>
    controller.abort(
      new CliError(
        `stopped following job ${jobId}; it keeps running (tessera job watch ${jobId} follows it again)`,
      ),
    ),
  );
  const updatesJson = options.output === "updates-json";
  const progress = updatesJson
    ? undefined
    : createJobProgress(context.stderr, {
        tty: isTerminal(context),
        totalEpochs: options.totalEpochs,
      });
  let outcome: JobOutcome;
  try {
    outcome = await watchJob(
      jobs,
      jobId,
      (update) => {
        if (updatesJson) {
          const json = toJson(StreamJobUpdatesResponseSchema, update, { alwaysEmitImplicit: true });
          context.stdout.write(`${JSON.stringify(json)}\n`);
        } else {
          progress?.update(update);
        }
      },
      { signal: controller.signal, onReconnect: (info) => progress?.reconnecting(info) },
    );
  } finally {
    progress?.stop();
    removeInterrupt?.();
  }
  if (options.output === "text") {
    context.stdout.write(formatJobStatus(outcome.status, outcome.result));
  } else if (options.output === "outcome-json") {
    context.stdout.write(
      formatJson(
        GetJobStatusResponseSchema,
        create(GetJobStatusResponseSchema, {
          status: outcome.status,
          ...(outcome.result ? { result: outcome.result } : {}),
        }),
      ),
    );
  }
  if (outcome.status.state !== JobState.COMPLETED) {
    throw new CliError(`job ${jobId} ${formatState(outcome.status)}`);
  }
  return outcome;
}

/** Whether stderr is a terminal that can draw a bar. */
function isTerminal(context: CliContext): boolean {
  const stream = context.stderr as { isTTY?: boolean };
  return stream.isTTY === true && context.env.TERM !== "dumb";
}
