// submitJob against in-memory JobService and WalletService fakes that keep state the way the
// real services promise (idempotent SubmitJob on job id, escrows by id), with a fake uploader.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { create, equals } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { generateKeyPair } from "@tessera/identity/keys";
import { ContentRefSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  ArtifactSchema,
  ArtifactService,
} from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import {
  type Job,
  JobResultSchema,
  JobSchema,
  type JobSpec,
  JobSpecSchema,
  JobState,
  JobStatusSchema,
  ResultArtifactSchema,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import { JobService } from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import {
  type Escrow,
  EscrowSchema,
  EscrowState,
} from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import type { CreateEscrowRequest } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { EscrowConflictError, escrowIdFor } from "./escrow.js";
import type { JobServerClient } from "./job-server-client.js";
import { JobSpecError, type LocalFileInput, parseJobSpecYaml } from "./job-spec-yaml.js";
import { type SubmitEvent, submitJob, type UploadFile, WalletRequiredError } from "./job-submit.js";

const caller = generateKeyPair();
const jobServerKey = generateKeyPair();
const NOW = new Date("2030-01-01T00:00:00Z");

function digestOf(name: string): string {
  return `sha256:${Buffer.from(name.padEnd(32, "-")).toString("hex").slice(0, 64)}`;
}

/** The fake network: a job server keeping jobs by id and a wallet keeping escrows by id. */
function fakeNetwork() {
  const jobs = new Map<string, Job>();
  const escrows = new Map<string, Escrow>();
  const createEscrowCalls: CreateEscrowRequest[] = [];
  const submitted: JobSpec[] = [];
  const jobTransport = createRouterTransport(({ service }) => {
    service(JobService, {
      submitJob(req) {
        const spec = req.spec ?? create(JobSpecSchema);
        submitted.push(spec);
        const existing = jobs.get(spec.jobId);
        if (existing?.spec) {
          if (!equals(JobSpecSchema, existing.spec, spec)) {
            throw new ConnectError("job id used with another spec", Code.AlreadyExists);
          }
          return { job: existing, created: false };
        }
        const job = create(JobSchema, {
          spec,
          status: create(JobStatusSchema, { jobId: spec.jobId, state: JobState.PENDING }),
          ownerAddress: caller.address,
        });
        jobs.set(spec.jobId, job);
        return { job, created: true };
      },
      getJobStatus(req) {
        const job = jobs.get(req.jobId);
        if (job === undefined) throw new ConnectError(`no job ${req.jobId}`, Code.NotFound);
        return { status: job.status, result: job.result };
      },
    });
    service(ArtifactService, {});
  });
  const walletTransport = createRouterTransport(({ service }) => {
    service(WalletService, {
      getEscrow(req) {
        const escrow = escrows.get(req.escrowId);
        if (escrow === undefined) throw new ConnectError("no escrow", Code.NotFound);
        return { escrow };
      },
      createEscrow(req) {
        createEscrowCalls.push(req);
        const escrow = create(EscrowSchema, {
          escrowId: req.escrowId,
          jobId: req.jobId,
          payerAddress: req.payerAddress,
          arbiterAddress: req.arbiterAddress,
          amount: req.amount,
          state: EscrowState.HELD,
          ...(req.expiresAt ? { expiresAt: req.expiresAt } : {}),
        });
        escrows.set(req.escrowId, escrow);
        return { escrow };
      },
    });
  });
  const jobServer: JobServerClient = {
    jobs: createClient(JobService, jobTransport),
    artifacts: createClient(ArtifactService, jobTransport),
    address: jobServerKey.address,
    callerAddress: caller.address,
    close: () => {},
  };
  return {
    jobServer,
    wallet: createClient(WalletService, walletTransport),
    jobs,
    escrows,
    createEscrowCalls,
    submitted,
  };
}

/** Uploads nothing: answers an artifact per file, the same one for the same file every time. */
function fakeUploader(): { upload: UploadFile; calls: LocalFileInput[] } {
  const calls: LocalFileInput[] = [];
  const upload: UploadFile = async (_client, file, options) => {
    calls.push(file);
    options.onProgress(file.sizeBytes, file.sizeBytes);
    return create(ArtifactSchema, {
      artifactId: `art-${file.name}`,
      name: file.name,
      ownerAddress: caller.address,
      content: create(ContentRefSchema, {
        digest: digestOf(file.name),
        sizeBytes: BigInt(file.sizeBytes),
        uri: `artifact://art-${file.name}`,
        mediaType: file.mediaType,
      }),
    });
  };
  return { upload, calls };
}

describe("submitJob", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-submit-"));
    await writeFile(join(dir, "model.json"), '{"format":"tessera.sequential/v1","layers":[]}');
    await writeFile(join(dir, "data.csv"), "x,label\n1,0\n");
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const freeSpec =
    "job_id: free-1\ntype: training\nmodel: {file: model.json}\ndataset: {file: data.csv}\n";
  const paidSpec = `job_id: paid-1
type: training
model: {file: model.json, id: blobs}
dataset: {file: data.csv}
requirements: {duration: 1m}
payment: {amount: "18446744073709551616", expires_in: 2h}
`;

  it("uploads the spec's files and submits the job with their content refs, without the wallet", async () => {
    const net = fakeNetwork();
    const uploader = fakeUploader();
    const events: SubmitEvent["kind"][] = [];
    const parsed = parseJobSpecYaml(freeSpec, dir);
    const submitted = await submitJob(net.jobServer, parsed, {
      upload: uploader.upload,
      onEvent: (event) => events.push(event.kind),
    });
    assert.equal(submitted.created, true);
    assert.equal(submitted.escrow, undefined);
    assert.deepEqual(
      uploader.calls.map((f) => f.name),
      ["model.json", "data.csv"],
    );
    const spec = net.submitted[0];
    assert.equal(spec?.model?.content?.uri, "artifact://art-model.json");
    assert.equal(spec?.model?.content?.mediaType, "application/vnd.tessera.sequential+json");
    assert.equal(spec?.dataset?.uri, "artifact://art-data.csv");
    assert.equal(spec?.dataset?.digest, digestOf("data.csv"));
    assert.equal(spec?.paymentAmount, "");
    assert.equal(spec?.escrowId, "");
    assert.equal(parsed.spec.dataset, undefined, "the parsed spec is left as it was");
    assert.deepEqual(events, [
      "upload-started",
      "upload-progress",
      "uploaded",
      "upload-started",
      "upload-progress",
      "uploaded",
    ]);
  });

  it("funds the escrow once, arbiter the job server, and a re-run returns the same job", async () => {
    const net = fakeNetwork();
    const uploader = fakeUploader();
    const options = { wallet: net.wallet, upload: uploader.upload, now: () => NOW };
    const first = await submitJob(net.jobServer, parseJobSpecYaml(paidSpec, dir), options);
    const escrowId = escrowIdFor(caller.address, "paid-1");
    assert.match(escrowId, /^job-escrow\.[0-9a-f]{40}$/);
    assert.equal(first.created, true);
    assert.equal(first.escrow?.escrowId, escrowId);
    assert.equal(net.createEscrowCalls.length, 1);
    const request = net.createEscrowCalls[0];
    assert.equal(request?.jobId, "paid-1");
    assert.equal(request?.payerAddress, caller.address);
    assert.equal(request?.arbiterAddress, jobServerKey.address);
    assert.equal(request?.amount, "18446744073709551616");
    assert.equal(
      request?.expiresAt && timestampDate(request.expiresAt).toISOString(),
      "2030-01-01T02:00:00.000Z",
    );
    const spec = net.submitted[0];
    assert.equal(
      spec?.expiresAt && timestampDate(spec.expiresAt).toISOString(),
      "2030-01-01T01:50:00.000Z",
      "the job ends 10 minutes before its escrow",
    );
    assert.equal(spec?.paymentAmount, "18446744073709551616");
    assert.equal(spec?.payerAddress, caller.address);
    assert.equal(spec?.escrowId, escrowId);

    // Again, an hour later: the escrow is found, not made twice; the job is the same one.
    const later = { ...options, now: () => new Date(NOW.getTime() + 3_600_000) };
    const second = await submitJob(net.jobServer, parseJobSpecYaml(paidSpec, dir), later);
    assert.equal(second.created, false);
    assert.equal(net.createEscrowCalls.length, 1);
    assert.equal(second.escrow?.escrowId, escrowId);
    assert.equal(net.jobs.size, 1);
  });

  it("makes the escrow outlast a deadline the spec sets", async () => {
    const net = fakeNetwork();
    const spec = paidSpec.replace(
      "job_id: paid-1",
      "job_id: paid-2\nexpires_at: 2030-01-02T00:00:00Z",
    );
    await submitJob(net.jobServer, parseJobSpecYaml(spec, dir), {
      wallet: net.wallet,
      upload: fakeUploader().upload,
      now: () => NOW,
    });
    const request = net.createEscrowCalls[0];
    assert.equal(
      request?.expiresAt && timestampDate(request.expiresAt).toISOString(),
      "2030-01-02T00:10:00.000Z",
    );
    const submitted = net.submitted[0];
    assert.equal(
      submitted?.expiresAt && timestampDate(submitted.expiresAt).toISOString(),
      "2030-01-02T00:00:00.000Z",
    );
  });

  it("refuses an escrow id that holds money on other terms, before submitting", async () => {
    const net = fakeNetwork();
    const escrowId = escrowIdFor(caller.address, "paid-1");
    net.escrows.set(
      escrowId,
      create(EscrowSchema, {
        escrowId,
        jobId: "paid-1",
        payerAddress: caller.address,
        arbiterAddress: jobServerKey.address,
        amount: "5",
        state: EscrowState.HELD,
      }),
    );
    await assert.rejects(
      submitJob(net.jobServer, parseJobSpecYaml(paidSpec, dir), {
        wallet: net.wallet,
        upload: fakeUploader().upload,
      }),
      (error: unknown) =>
        error instanceof EscrowConflictError &&
        error.message ===
          `escrow ${escrowId} already exists with another amount (5); use another job id or payment.escrow_id`,
    );
    assert.equal(net.submitted.length, 0);
  });

  it("needs a wallet for a paid job", async () => {
    const net = fakeNetwork();
    await assert.rejects(
      submitJob(net.jobServer, parseJobSpecYaml(paidSpec, dir), { upload: fakeUploader().upload }),
      WalletRequiredError,
    );
    assert.equal(net.submitted.length, 0);
  });

  it("uses the output of a completed job, and names the field when the job is not done", async () => {
    const net = fakeNetwork();
    const modelRef = create(ContentRefSchema, {
      digest: digestOf("trained"),
      sizeBytes: 99n,
      uri: "artifact://trained-model",
      mediaType: "application/onnx",
    });
    net.jobs.set(
      "train-1",
      create(JobSchema, {
        status: create(JobStatusSchema, { jobId: "train-1", state: JobState.COMPLETED }),
        result: create(JobResultSchema, {
          artifacts: [
            create(ResultArtifactSchema, { name: "model", content: modelRef }),
            create(ResultArtifactSchema, { name: "metrics", content: create(ContentRefSchema) }),
          ],
        }),
      }),
    );
    net.jobs.set(
      "train-2",
      create(JobSchema, {
        status: create(JobStatusSchema, { jobId: "train-2", state: JobState.RUNNING }),
      }),
    );
    const infer = (from: string, artifact = "model") =>
      parseJobSpecYaml(
        `job_id: infer-${from}-${artifact}\ntype: inference\nmodel: {from_job: ${from}, artifact: ${artifact}}\ndataset: {file: data.csv}\n`,
        dir,
      );
    const submitted = await submitJob(net.jobServer, infer("train-1"), {
      upload: fakeUploader().upload,
    });
    assert.ok(submitted.job.spec?.model?.content);
    assert.ok(equals(ContentRefSchema, submitted.job.spec.model.content, modelRef));

    const problem = async (from: string, artifact?: string) => {
      try {
        await submitJob(net.jobServer, infer(from, artifact), { upload: fakeUploader().upload });
      } catch (error) {
        assert.ok(error instanceof JobSpecError, String(error));
        return error.message;
      }
      assert.fail("submitted");
    };
    assert.equal(
      await problem("train-2"),
      'model.from_job: job "train-2" is running; its outputs can be used once it is completed',
    );
    assert.equal(await problem("train-9"), 'model.from_job: no job "train-9" on this job server');
    assert.equal(
      await problem("train-1", "weights"),
      'model.from_job: job "train-1" has no output "weights" (it has: model, metrics)',
    );
  });
});
