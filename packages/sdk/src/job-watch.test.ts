// watchJob against an in-memory JobService whose update streams end early the way a real job
// server's do (deadline, restart), to check that the watch resumes where it stopped.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type ServiceImpl,
} from "@connectrpc/connect";
import {
  JobResultSchema,
  JobState,
  JobStatusSchema,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  JobService,
  type StreamJobUpdatesResponse,
  StreamJobUpdatesResponseSchema,
} from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { waitForJob, watchJob } from "./job-watch.js";

function update(sequence: number, state: JobState, withResult = false): StreamJobUpdatesResponse {
  return create(StreamJobUpdatesResponseSchema, {
    jobId: "job-1",
    sequence: BigInt(sequence),
    status: create(JobStatusSchema, { jobId: "job-1", state, progress: sequence / 10 }),
    ...(withResult
      ? {
          result: create(JobResultSchema, {
            jobId: "job-1",
            state,
            finalMetrics: { "test/accuracy": 0.9 },
          }),
        }
      : {}),
  });
}

/** A JobService whose n-th StreamJobUpdates call runs `streams[n]`; records each after_sequence. */
function fakeJobs(
  streams: ReadonlyArray<(after: bigint) => AsyncIterable<StreamJobUpdatesResponse>>,
  getJobStatus: Partial<ServiceImpl<typeof JobService>>["getJobStatus"] = () => {
    throw new ConnectError("no status in this test", Code.Unavailable);
  },
) {
  const opened: bigint[] = [];
  let statusCalls = 0;
  const transport = createRouterTransport(({ service }) => {
    service(JobService, {
      async *streamJobUpdates(req) {
        opened.push(req.afterSequence);
        const stream = streams[opened.length - 1];
        if (stream === undefined) throw new ConnectError("unexpected stream", Code.Internal);
        yield* stream(req.afterSequence);
      },
      getJobStatus: (req, ctx) => {
        statusCalls += 1;
        if (getJobStatus === undefined) throw new Error("unreachable");
        return getJobStatus(req, ctx);
      },
    });
  });
  return {
    client: createClient(JobService, transport),
    opened,
    statusCalls: () => statusCalls,
  };
}

describe("watchJob", () => {
  it("resumes after the last sequence when a stream ends early, never repeating an update", async () => {
    const jobs = fakeJobs(
      [
        async function* () {
          yield update(1, JobState.QUEUED);
          yield update(2, JobState.RUNNING);
          throw new ConnectError("deadline", Code.DeadlineExceeded);
        },
        async function* () {
          yield update(2, JobState.RUNNING); // replayed by the server: skipped
          yield update(3, JobState.RUNNING);
        },
        async function* () {
          yield update(4, JobState.COMPLETED, true);
        },
      ],
      () => ({ status: create(JobStatusSchema, { state: JobState.RUNNING }) }),
    );
    const seen: bigint[] = [];
    const outcome = await watchJob(jobs.client, "job-1", (u) => seen.push(u.sequence), {
      retryDelayMs: 1,
    });
    assert.deepEqual(seen, [1n, 2n, 3n, 4n]);
    assert.deepEqual(jobs.opened, [0n, 2n, 3n]);
    assert.equal(outcome.status.state, JobState.COMPLETED);
    assert.equal(outcome.result?.finalMetrics["test/accuracy"], 0.9);
  });

  it("reopens a stream that stays silent past its own deadline, telling the server that deadline", async () => {
    const timeouts: Array<string | null> = [];
    const transport = createRouterTransport(({ service }) => {
      let calls = 0;
      service(JobService, {
        async *streamJobUpdates(req, ctx) {
          calls += 1;
          timeouts.push(ctx.requestHeader.get("grpc-timeout"));
          if (calls === 1) {
            yield update(1, JobState.RUNNING);
            await new Promise<void>((resolve) =>
              ctx.signal.addEventListener("abort", () => resolve()),
            );
            return;
          }
          assert.equal(req.afterSequence, 1n);
          yield update(2, JobState.COMPLETED, true);
        },
        getJobStatus: () => ({ status: create(JobStatusSchema, { state: JobState.RUNNING }) }),
      });
    });
    const outcome = await watchJob(createClient(JobService, transport), "job-1", undefined, {
      streamTimeoutMs: 50,
    });
    assert.equal(outcome.status.state, JobState.COMPLETED);
    assert.deepEqual(timeouts, ["50m", "50m"]);
  });

  it("fetches the result with GetJobStatus when the terminal update carries none", async () => {
    const jobs = fakeJobs(
      [
        async function* () {
          yield update(7, JobState.FAILED);
        },
      ],
      () => ({
        status: create(JobStatusSchema, { state: JobState.FAILED, errorMessage: "out of memory" }),
        result: create(JobResultSchema, { state: JobState.FAILED, errorMessage: "out of memory" }),
      }),
    );
    const outcome = await waitForJob(jobs.client, "job-1");
    assert.equal(outcome.status.state, JobState.FAILED);
    assert.equal(outcome.status.errorMessage, "out of memory");
    assert.equal(outcome.result?.errorMessage, "out of memory");
  });

  it("notices a job that ended between streams through GetJobStatus", async () => {
    const jobs = fakeJobs(
      [
        async function* () {
          yield update(1, JobState.RUNNING);
        },
        async function* () {
          // Ends at once: the job server has nothing after sequence 1 to say.
        },
      ],
      () => ({ status: create(JobStatusSchema, { state: JobState.CANCELLED }) }),
    );
    const outcome = await watchJob(jobs.client, "job-1", undefined, { retryDelayMs: 1 });
    assert.equal(outcome.status.state, JobState.CANCELLED);
    assert.deepEqual(jobs.opened, [0n, 1n]);
  });

  it("stops at an answer about the job (not_found) without retrying", async () => {
    const jobs = fakeJobs([
      // biome-ignore lint/correctness/useYield: the stream fails before its first message
      async function* () {
        throw new ConnectError("no job job-1", Code.NotFound);
      },
    ]);
    await assert.rejects(watchJob(jobs.client, "job-1"), (error: unknown) => {
      return error instanceof ConnectError && error.code === Code.NotFound;
    });
    assert.equal(jobs.opened.length, 1);
  });

  it("gives up after maxReconnects streams in a row that bring nothing", async () => {
    const unavailable = async function* (): AsyncGenerator<StreamJobUpdatesResponse> {
      yield* [];
      throw new ConnectError("server restarting", Code.Unavailable);
    };
    const jobs = fakeJobs([unavailable, unavailable, unavailable, unavailable]);
    const reconnects: number[] = [];
    await assert.rejects(
      watchJob(jobs.client, "job-1", undefined, {
        maxReconnects: 2,
        retryDelayMs: 1,
        onReconnect: (info) => reconnects.push(info.failures),
      }),
      (error: unknown) => error instanceof ConnectError && error.code === Code.Unavailable,
    );
    assert.equal(jobs.opened.length, 3);
    assert.deepEqual(reconnects, [1, 2]);
  });

  it("keeps waiting through streams that end quietly after a while (a job queued for long)", async () => {
    const quiet = async function* (): AsyncGenerator<StreamJobUpdatesResponse> {
      // Open past half of the 200 ms deadline below, then closed by the server before it.
      await new Promise((resolve) => setTimeout(resolve, 130));
      yield* [];
    };
    const jobs = fakeJobs(
      [
        async function* () {
          yield update(1, JobState.QUEUED);
        },
        quiet,
        quiet,
        quiet,
        async function* () {
          yield update(2, JobState.COMPLETED, true);
        },
      ],
      () => ({ status: create(JobStatusSchema, { state: JobState.QUEUED }) }),
    );
    const failures: number[] = [];
    const outcome = await watchJob(jobs.client, "job-1", undefined, {
      streamTimeoutMs: 200,
      maxReconnects: 1,
      retryDelayMs: 1,
      onReconnect: (info) => failures.push(info.failures),
    });
    assert.equal(outcome.status.state, JobState.COMPLETED);
    assert.deepEqual(failures, [0, 0, 0, 0]);
    assert.deepEqual(jobs.opened, [0n, 1n, 1n, 1n, 1n]);
  });

  it("stops when its signal aborts, with the signal's reason", async () => {
    const controller = new AbortController();
    const jobs = fakeJobs([
      async function* () {
        yield update(1, JobState.RUNNING);
        await new Promise(() => {}); // a stream that stays open
      },
    ]);
    const reason = new Error("user pressed ctrl-c");
    const watching = watchJob(jobs.client, "job-1", () => controller.abort(reason), {
      signal: controller.signal,
    });
    await assert.rejects(watching, (error: unknown) => error === reason);
  });
});
