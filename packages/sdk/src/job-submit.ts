/**
 * Submitting a parsed job spec: upload its local files as artifacts, look up the outputs of
 * earlier jobs it uses, fund its escrow when it pays, then SubmitJob. Every step is idempotent,
 * so running the same submission again (same job id) returns the job it made instead of a second
 * one, and never holds the money twice.
 */
import { clone } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { type ContentRef, ContentRefSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { Artifact } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import {
  type Job,
  type JobSpec,
  JobSpecSchema,
  type NodeAssignment,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { Escrow } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import type { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { uploadArtifact } from "./artifacts.js";
import { ensureJobEscrow, escrowIdFor } from "./escrow.js";
import { resolveJobOutput } from "./job-outputs.js";
import type { JobServerClient } from "./job-server-client.js";
import {
  type JobOutputInput,
  type LocalFileInput,
  type ParsedJobSpec,
  setContentRef,
} from "./job-spec-yaml.js";
import { SDK_PROTOCOL_VERSION } from "./protocol-version.js";
import { callOptions } from "./service-client.js";

/** Something that happened during {@link submitJob}, for progress display. */
export type SubmitEvent =
  | { readonly kind: "upload-started"; readonly file: LocalFileInput }
  | {
      readonly kind: "upload-progress";
      readonly file: LocalFileInput;
      readonly sentBytes: number;
      readonly totalBytes: number;
    }
  | { readonly kind: "uploaded"; readonly file: LocalFileInput; readonly artifact: Artifact }
  | {
      readonly kind: "output-resolved";
      readonly output: JobOutputInput;
      readonly content: ContentRef;
    }
  | { readonly kind: "escrow-ready"; readonly escrow: Escrow; readonly created: boolean };

/** Options of {@link submitJob}. */
export interface SubmitJobOptions {
  /**
   * The wallet, with calls signed by the same key as the job server client's (the payer must be
   * the job's owner). Required when the spec pays; unused otherwise.
   */
  readonly wallet?: Client<typeof WalletService> | undefined;
  /** Stops the submission between (or during) steps. */
  readonly signal?: AbortSignal | undefined;
  /** Told about uploads, resolved outputs and the escrow as they happen. */
  readonly onEvent?: ((event: SubmitEvent) => void) | undefined;
  /** Clock for the escrow's expiry; default the system clock. */
  readonly now?: (() => Date) | undefined;
  /** Uploads one file; default {@link uploadArtifact}. Tests replace it. */
  readonly upload?: UploadFile | undefined;
}

/** How {@link submitJob} uploads one local file. */
export type UploadFile = (
  client: JobServerClient["artifacts"],
  file: LocalFileInput,
  options: { signal?: AbortSignal | undefined; onProgress: (sent: number, total: number) => void },
) => Promise<Artifact>;

/** The outcome of {@link submitJob}. */
export interface SubmittedJob {
  /** The job as the job server stored it. */
  readonly job: Job;
  /** False when the job existed already (a re-run with the same job id). */
  readonly created: boolean;
  /** The job's escrow when it pays. */
  readonly escrow: Escrow | undefined;
  /** The artifacts of the spec's local files, in document order. */
  readonly uploads: readonly Artifact[];
  /** A direct-access grant when the job asked for one and is already assigned. */
  readonly nodeAssignment: NodeAssignment | undefined;
}

/** A paid spec submitted without a wallet client. */
export class WalletRequiredError extends Error {
  constructor(jobId: string) {
    super(`job ${jobId} pays for its work (payment.amount): a wallet connection is needed`);
    this.name = "WalletRequiredError";
  }
}

/**
 * How long before its escrow expires a paid job's deadline falls (JobSpec.expires_at, when the
 * spec sets none): a tenth of the escrow's lifetime, at most 10 minutes. In that time the job
 * server settles a job that ran out (refunds it) before the payer could take the money back.
 */
export function settlementMarginMs(escrowExpiresInMs: number): number {
  return Math.min(600_000, Math.floor(escrowExpiresInMs / 10));
}

const defaultUpload: UploadFile = (client, file, options) =>
  uploadArtifact(
    client,
    { path: file.path },
    { name: file.name, mediaType: file.mediaType },
    { signal: options.signal, onProgress: options.onProgress },
  );

/**
 * Submits `parsed` to the job server as `jobServer`'s caller (the job's owner and, for a paid
 * job, its payer):
 * 1. uploads each local file as an artifact (content the caller already uploaded is not sent
 *    again) and puts its ContentRef in the spec;
 * 2. puts the ContentRef of each `from_job` output in the spec (the earlier job must be
 *    COMPLETED);
 * 3. when `payment.amount` > 0, finds or creates the escrow in the wallet: id from
 *    `payment.escrow_id` or {@link escrowIdFor}, the job id, the amount, arbiter = the job
 *    server's address, expiry now + `payment.expires_in` (later if the spec's `expires_at`
 *    needs it); sets payer_address, escrow_id and, unless the spec has one, expires_at = the
 *    escrow's expiry minus {@link settlementMarginMs} (the job server requires the job to end
 *    before its escrow does);
 * 4. calls SubmitJob, which returns the existing job for a job id it already has (same spec).
 * `parsed` itself is not changed.
 * @throws JobSpecError for a `from_job` that cannot be used; WalletRequiredError;
 * EscrowConflictError; ConnectError from the job server or wallet (already_exists: the job id is
 * taken by a different spec).
 */
export async function submitJob(
  jobServer: JobServerClient,
  parsed: ParsedJobSpec,
  options: SubmitJobOptions = {},
): Promise<SubmittedJob> {
  const { signal, onEvent } = options;
  const spec: JobSpec = clone(JobSpecSchema, parsed.spec);
  const jobId = spec.jobId;
  if (parsed.payment !== undefined && options.wallet === undefined) {
    throw new WalletRequiredError(jobId);
  }

  const upload = options.upload ?? defaultUpload;
  const uploads: Artifact[] = [];
  for (const file of parsed.localFiles) {
    signal?.throwIfAborted();
    onEvent?.({ kind: "upload-started", file });
    const artifact = await upload(jobServer.artifacts, file, {
      signal,
      onProgress: (sentBytes, totalBytes) =>
        onEvent?.({ kind: "upload-progress", file, sentBytes, totalBytes }),
    });
    if (artifact.content === undefined) {
      throw new Error(`the job server stored ${file.field} without its content reference`);
    }
    setContentRef(spec, file.slot, clone(ContentRefSchema, artifact.content));
    uploads.push(artifact);
    onEvent?.({ kind: "uploaded", file, artifact });
  }

  for (const output of parsed.jobOutputs) {
    signal?.throwIfAborted();
    const content = await resolveJobOutput(jobServer.jobs, output, signal);
    setContentRef(spec, output.slot, content);
    onEvent?.({ kind: "output-resolved", output, content });
  }

  let escrow: Escrow | undefined;
  if (parsed.payment !== undefined && options.wallet !== undefined) {
    signal?.throwIfAborted();
    const payerAddress = jobServer.callerAddress;
    const escrowId = parsed.payment.escrowId ?? escrowIdFor(payerAddress, jobId);
    const margin = settlementMarginMs(parsed.payment.escrowExpiresInMs);
    const nowMs = (options.now?.() ?? new Date()).getTime();
    // The escrow must outlive the job: past a deadline the spec sets, by the margin.
    const expiresInMs =
      spec.expiresAt === undefined
        ? parsed.payment.escrowExpiresInMs
        : Math.max(parsed.payment.escrowExpiresInMs, timestampMs(spec.expiresAt) + margin - nowMs);
    const ensured = await ensureJobEscrow(
      options.wallet,
      {
        escrowId,
        jobId,
        payerAddress,
        amount: parsed.payment.amount,
        arbiterAddress: jobServer.address,
        expiresInMs,
      },
      { signal, now: () => new Date(nowMs) },
    );
    escrow = ensured.escrow;
    onEvent?.({ kind: "escrow-ready", escrow, created: ensured.created });
    spec.payerAddress = payerAddress;
    spec.escrowId = escrowId;
    if (spec.expiresAt === undefined && escrow.expiresAt !== undefined) {
      // Derived from the escrow (found again on a re-run), so the spec comes out the same.
      spec.expiresAt = timestampFromMs(timestampMs(escrow.expiresAt) - margin);
    }
  }

  signal?.throwIfAborted();
  const response = await jobServer.jobs.submitJob(
    { protocolVersion: SDK_PROTOCOL_VERSION, spec },
    callOptions(signal),
  );
  if (response.job === undefined) {
    throw new Error(`the job server answered SubmitJob without the job ${jobId}`);
  }
  return {
    job: response.job,
    created: response.created,
    escrow,
    uploads,
    nodeAssignment: response.nodeAssignment,
  };
}
