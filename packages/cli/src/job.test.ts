// `tessera job ...` in this process against a scripted JobService on a real HTTP/2 port: what the
// commands send (signed by the key, for the job server's address), print and exit with. The real
// job server is driven by job-e2e.test.ts.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { signedRequestHeaders } from "@tessera/auth";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { createKeystore } from "@tessera/identity/keystore";
import { ContentRefSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  JobFailureReason,
  JobResultSchema,
  JobSchema,
  JobSpecSchema,
  JobState,
  JobStatusSchema,
  JobType,
  ResultArtifactSchema,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  JobService,
  type ListJobsRequest,
  StreamJobUpdatesResponseSchema,
} from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { runCli } from "./program.js";
import { runInProcess } from "./test-cli-context.js";

const server = generateKeyPair();
const DIGEST = `sha256:${"a".repeat(64)}`;

function status(jobId: string, state: JobState, extra: Record<string, unknown> = {}) {
  return create(JobStatusSchema, { jobId, state, ...extra });
}

const completedResult = create(JobResultSchema, {
  state: JobState.COMPLETED,
  finalMetrics: { "test/accuracy": 0.95 },
  artifacts: [
    create(ResultArtifactSchema, {
      name: "model",
      content: create(ContentRefSchema, {
        digest: DIGEST,
        sizeBytes: 10n,
        uri: "artifact://model-1",
        mediaType: "application/onnx",
      }),
    }),
  ],
});

describe("tessera job (scripted job server)", () => {
  let dir: string;
  let http: http2.Http2Server;
  let url: string;
  let alice: KeyPair;
  let env: Record<string, string>;
  const callers: string[] = [];
  const targets: string[] = [];
  const listRequests: ListJobsRequest[] = [];

  const record = (ctx: HandlerContext) => {
    callers.push(ctx.requestHeader.get(signedRequestHeaders.caller) ?? "");
    targets.push(ctx.requestHeader.get(signedRequestHeaders.target) ?? "");
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-cli-job-"));
    alice = (await createKeystore({ homeDir: dir }).create("alice")).keyPair;
    http = http2.createServer(
      connectNodeAdapter({
        routes: (router) =>
          router.service(JobService, {
            getJobStatus(req, ctx) {
              record(ctx);
              if (req.jobId === "bad") {
                const failed = status("bad", JobState.FAILED, {
                  failureReason: JobFailureReason.NODE_ERROR,
                  errorMessage: "boom",
                });
                return { status: failed };
              }
              if (req.jobId !== "good")
                throw new ConnectError(`no job ${req.jobId}`, Code.NotFound);
              return {
                status: status("good", JobState.COMPLETED, { progress: 1 }),
                result: completedResult,
              };
            },
            async *streamJobUpdates(req, ctx) {
              record(ctx);
              const jobId = req.jobId;
              const running = status(jobId, JobState.RUNNING, { progress: 0.5, currentEpoch: 1 });
              yield create(StreamJobUpdatesResponseSchema, {
                jobId,
                sequence: 1n,
                status: running,
                liveMetrics: { "train/loss": 0.5 },
              });
              if (jobId === "slow") {
                // Stays running until the watcher goes away.
                await new Promise<void>((resolve) =>
                  ctx.signal.addEventListener("abort", () => resolve()),
                );
                return;
              }
              if (jobId === "good") {
                yield create(StreamJobUpdatesResponseSchema, {
                  jobId,
                  sequence: 2n,
                  status: status(jobId, JobState.COMPLETED, { progress: 1, currentEpoch: 1 }),
                  result: completedResult,
                });
              } else {
                yield create(StreamJobUpdatesResponseSchema, {
                  jobId,
                  sequence: 2n,
                  status: status(jobId, JobState.FAILED, {
                    progress: 0.5,
                    failureReason: JobFailureReason.NODE_ERROR,
                    errorMessage: "boom",
                  }),
                });
              }
            },
            cancelJob(req, ctx) {
              record(ctx);
              return { status: status(req.jobId, JobState.CANCELLED), refundIssued: false };
            },
            listJobs(req, ctx) {
              record(ctx);
              listRequests.push(req);
              return {
                jobs: [
                  create(JobSchema, {
                    spec: create(JobSpecSchema, { jobId: "good", jobType: JobType.TRAINING }),
                    status: status("good", JobState.COMPLETED, { progress: 1 }),
                  }),
                ],
                totalCount: 1n,
              };
            },
          }),
      }),
    );
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
    env = {
      TESSERA_HOME: dir,
      TESSERA_KEY: "alice",
      TESSERA_JOB_SERVER_URL: url,
      TESSERA_JOB_SERVER_ADDRESS: server.address,
    };
  });

  after(async () => {
    await new Promise((resolve) => http?.close(resolve));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const tessera = (args: string[], extra: Record<string, string> = {}) =>
    runInProcess(args, { ...env, ...extra });

  it("status prints the job and signs the read with the key, for the job server", async () => {
    const run = await tessera(["job", "status", "good"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^job id: good\nstate: completed\nprogress: 100%\n/);
    assert.match(run.stdout, /^ {2}model {2}10 B {2}artifact:\/\/model-1 {2}sha256:a{64}$/m);
    assert.equal(callers.at(-1), alice.address);
    assert.equal(targets.at(-1), server.address);
    const json = await tessera(["job", "status", "good", "--json"]);
    assert.equal(JSON.parse(json.stdout).status.state, "JOB_STATE_COMPLETED");
    const missing = await tessera(["job", "status", "nope"]);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, "tessera: error: not_found: no job nope\n");
  });

  it("watch follows a job to completion: progress on stderr, the result on stdout, exit 0", async () => {
    const run = await tessera(["job", "watch", "good"]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, "state: running\nepoch 1  train/loss=0.5\nstate: completed\n");
    assert.match(run.stdout, /^job id: good\nstate: completed\n/);
    assert.match(run.stdout, /^ {2}test\/accuracy {2}0\.95$/m);
  });

  it("Ctrl-C stops following a job, saying it keeps running", async () => {
    let interrupt: (() => void) | undefined;
    let released = false;
    let stderr = "";
    let sawRunning: () => void = () => {};
    const running = new Promise<void>((resolve) => {
      sawRunning = resolve;
    });
    const code = runCli(["job", "watch", "slow"], {
      env,
      stdin: Readable.from([]),
      stdout: new Writable({ write: (_chunk, _encoding, callback) => callback() }),
      stderr: new Writable({
        write(chunk: Buffer, _encoding, callback) {
          stderr += chunk.toString();
          if (stderr.includes("state: running")) sawRunning();
          callback();
        },
      }),
      onInterrupt: (handler) => {
        interrupt = handler;
        return () => {
          released = true;
        };
      },
    });
    await running;
    interrupt?.();
    assert.equal(await code, 1);
    assert.match(
      stderr,
      /\ntessera: error: stopped following job slow; it keeps running \(tessera job watch slow follows it again\)\n$/,
    );
    assert.equal(released, true, "the Ctrl-C handler is removed again");
  });

  it("watch exits 1 naming the failure when the job fails", async () => {
    const run = await tessera(["job", "watch", "bad"]);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /^state: failed \(node-error: boom\)$/m);
    assert.match(run.stderr, /\ntessera: error: job bad failed \(node-error: boom\)\n$/);
  });

  it("watch --json prints each update as one JSON line", async () => {
    const run = await tessera(["job", "watch", "good", "--json"]);
    assert.equal(run.code, 0, run.stderr);
    const updates = run.stdout
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    assert.deepEqual(
      updates.map((u) => [u.sequence, u.status.state]),
      [
        ["1", "JOB_STATE_RUNNING"],
        ["2", "JOB_STATE_COMPLETED"],
      ],
    );
    assert.equal(run.stderr, "");
  });

  it("list sends the filters and prints a table; cancel prints the cancelled job", async () => {
    const run = await tessera([
      "job",
      "list",
      "--state",
      "completed",
      "--type",
      "training",
      "--page-size",
      "5",
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /^JOB ID\s+TYPE\s+STATE\s+PROGRESS\s+PAYMENT\s+CREATED\ngood\s+training\s+completed\s+100%\s+free\s+-\n$/,
    );
    const sent = listRequests.at(-1);
    assert.equal(sent?.state, JobState.COMPLETED);
    assert.equal(sent?.jobType, JobType.TRAINING);
    assert.equal(sent?.pageSize, 5);
    const cancel = await tessera(["job", "cancel", "good", "--reason", "changed my mind"]);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal(cancel.stdout, "job id: good\nstate: cancelled\nrefund: none due\n");
  });

  it("refuses bad input before calling anything, one line each", async () => {
    const before = callers.length;
    const cases: Array<[string[], Record<string, string>, string]> = [
      [
        ["job", "status", "a b"],
        {},
        'the job id must be 1 to 128 of A-Z, a-z, 0-9, ".", "_", ":" and "-", got "a b"',
      ],
      [
        ["job", "list", "--state", "done"],
        {},
        'unknown --state "done": use pending, queued, assigned, running, validating, completed, failed, cancelled',
      ],
      [
        ["job", "status", "good"],
        { TESSERA_KEY: "" },
        'no key to sign with: pass --key <name> or set TESSERA_KEY (create one with "tessera keys new <name>")',
      ],
      [
        ["job", "status", "good"],
        { TESSERA_JOB_SERVER_ADDRESS: "", TESSERA_DATA_DIR: join(dir, "none") },
        `the job server's address is unknown: no key file at ${join(dir, "none", "job-server", "key.json")}; pass --job-server-address or set TESSERA_JOB_SERVER_ADDRESS`,
      ],
      [
        ["job", "submit", join(dir, "missing.yaml")],
        {},
        `no such job spec: ${join(dir, "missing.yaml")}`,
      ],
      [
        ["artifact", "get", "file:///etc/passwd"],
        {},
        'not an artifact: "file:///etc/passwd"; give its id or artifact://<id> (as a job\'s result lists it)',
      ],
    ];
    for (const [args, extra, message] of cases) {
      const run = await tessera(args, extra);
      assert.equal(run.code, 1, args.join(" "));
      assert.equal(run.stderr, `tessera: error: ${message}\n`, args.join(" "));
      assert.equal(run.stdout, "");
    }
    assert.equal(callers.length, before, "nothing was sent");
  });

  it("submit names every bad field of the spec by its path", async () => {
    await mkdir(join(dir, "spec"), { recursive: true });
    const spec = join(dir, "spec", "bad.yaml");
    await writeFile(
      spec,
      "type: training\nmodel: {file: nope.json}\ndataset: {file: data.csv}\nepochs: many\n",
    );
    const run = await tessera(["job", "submit", spec]);
    assert.equal(run.code, 1);
    assert.equal(
      run.stderr,
      `tessera: error: ${spec}: model.file: no such file nope.json (looked at ${join(dir, "spec", "nope.json")}); dataset.file: no such file data.csv (looked at ${join(dir, "spec", "data.csv")}); epochs: must be a whole number, got "many"\n`,
    );
  });

  it("says when nothing answers, with a hint to start the network", async () => {
    const closed = http2.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise((resolve) => closed.close(resolve));
    const run = await tessera(["job", "status", "good"], {
      TESSERA_JOB_SERVER_URL: `http://127.0.0.1:${port}`,
    });
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /^tessera: error: unavailable: .*\(is the network running\? "pnpm start" runs a local one\)\n$/,
    );
  });
});
