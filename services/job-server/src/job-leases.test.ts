/**
 * Leases over time, on SQLite and PostgreSQL: lapses requeue a job until its attempts run out,
 * the time limit holds server-side, unservable jobs say why and fail at expires_at, a node can
 * pull with AssignJob, a restart keeps everything acknowledged, and artifacts are readable only
 * by those the job concerns.
 */
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobFailureReason, JobState } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import {
  freeSpec,
  predictions,
  type SignedClients,
  signedClients,
  startTestJobServer,
  type TestJobServer,
  TestNode,
  V1,
  watchJob,
} from "./test-support.js";

async function rejectsWith(promise: Promise<unknown>, code: Code, message?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(Code[error.code], Code[code], error.rawMessage);
    if (message !== undefined) assert.match(error.rawMessage, message);
    return true;
  });
}

/** Waits until `check` holds (polling a job's status), or fails after `timeoutMs`. */
async function eventually<T>(
  read: () => Promise<T>,
  check: (value: T) => boolean,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > deadline)
      assert.fail(
        `condition not reached; last: ${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v))}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

await describeEachStore("job server: leases over time", (backend: StoreBackend) => {
  let space = 0;
  const closers: Array<() => unknown> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  async function start(env: Record<string, string> = {}, name = `lease${++space}`) {
    const server = await startTestJobServer(backend, name, env);
    closers.push(() => server.close());
    const client = signedClients(server.url, server.address);
    closers.push(() => client.close());
    return { server, client };
  }

  function node(server: TestJobServer, options: ConstructorParameters<typeof TestNode>[2] = {}) {
    const created = new TestNode(server.url, server.address, options);
    closers.push(() => created.close());
    return created;
  }

  const status = (client: SignedClients, jobId: string) => () =>
    client.jobs.getJobStatus({ protocolVersion: V1, jobId });

  test("a lapsed lease requeues the job; after max_attempts it fails ATTEMPTS_EXHAUSTED", async () => {
    const { server, client } = await start({ LEASE_TIMEOUT_MS: "400", ACCEPT_TIMEOUT_MS: "400" });
    const silent = node(server);
    await silent.register();
    await silent.openStreamReady();
    await client.jobs.submitJob({
      protocolVersion: V1,
      spec: freeSpec("job-lapse", { maxAttempts: 2 }),
    });

    const first = await silent.nextAssignment();
    await silent.accept(first);
    // The node goes quiet: no heartbeat, no progress. The lease lapses and the job comes back.
    const second = await silent.nextAssignment();
    assert.equal(second.attempt, 2);
    assert.notEqual(second.leaseId, first.leaseId);
    await rejectsWith(silent.progress(first, 0.5), Code.FailedPrecondition);
    await silent.accept(second);
    const failed = await eventually(
      status(client, "job-lapse"),
      (s) => s.status?.state === JobState.FAILED,
    );
    assert.equal(failed.status?.failureReason, JobFailureReason.ATTEMPTS_EXHAUSTED);
    assert.match(failed.status?.errorMessage ?? "", /2 attempt/);
  });

  test("heartbeats keep a lease; the server enforces max_duration_ms", async () => {
    const { server, client } = await start({
      LEASE_TIMEOUT_MS: "600",
      HEARTBEAT_INTERVAL_MS: "100",
    });
    const worker = node(server);
    await worker.register();
    await worker.openStreamReady();
    await client.jobs.submitJob({
      protocolVersion: V1,
      spec: freeSpec("job-slow", { maxDurationMs: 1500n }),
    });
    const assignment = await worker.nextAssignment();
    await worker.accept(assignment);
    await worker.progress(assignment, 0.1);
    const beats = setInterval(() => {
      void worker.heartbeat([assignment.leaseId], [assignment.jobId]).catch(() => undefined);
    }, 100);
    try {
      const failed = await eventually(
        status(client, "job-slow"),
        (s) => s.status?.state === JobState.FAILED,
      );
      assert.equal(failed.status?.failureReason, JobFailureReason.TIME_LIMIT_EXCEEDED);
      assert.equal(failed.status?.attempt, 1, "heartbeats kept the lease until the time limit");
    } finally {
      clearInterval(beats);
    }
    const cancellation = await worker.nextCancellation();
    assert.equal(cancellation.leaseId, assignment.leaseId);
  });

  test("a job nobody can serve stays QUEUED saying why, then fails NO_ELIGIBLE_NODE", async () => {
    const { server, client } = await start();
    const worker = node(server, { runtimes: ["tfjs"] });
    await worker.register();
    await worker.openStreamReady();
    await client.jobs.submitJob({
      protocolVersion: V1,
      spec: freeSpec("job-nowhere", {
        requiredRuntime: "onnxruntime",
        expiresAt: timestampFromMs(Date.now() + 1500),
      }),
    });
    const waiting = await eventually(
      status(client, "job-nowhere"),
      (s) => (s.status?.errorMessage ?? "") !== "",
    );
    assert.equal(waiting.status?.state, JobState.QUEUED);
    assert.match(waiting.status?.errorMessage ?? "", /onnxruntime/);
    const failed = await eventually(
      status(client, "job-nowhere"),
      (s) => s.status?.state === JobState.FAILED,
    );
    assert.equal(failed.status?.failureReason, JobFailureReason.NO_ELIGIBLE_NODE);
    assert.match(failed.status?.errorMessage ?? "", /onnxruntime/);
  });

  test("a node without a stream pulls work with AssignJob; refusing gives the job back", async () => {
    const { server, client } = await start();
    const puller = node(server);
    await puller.register();
    const empty = await puller.clients.nodes.assignJob({
      protocolVersion: V1,
      nodeAddress: puller.address,
      waitMs: 0,
    });
    assert.equal(empty.assignment, undefined);
    assert.ok(empty.retryAfterMs > 0n);
    await client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("job-pull") });
    const pulled = await puller.clients.nodes.assignJob({
      protocolVersion: V1,
      nodeAddress: puller.address,
      load: { freeSlots: 1 },
      waitMs: 2000,
    });
    assert.equal(pulled.assignment?.jobId, "job-pull");
    const assignment = pulled.assignment;
    assert.ok(assignment);
    const refused = await puller.accept(assignment, false, "no GPU today");
    assert.equal(refused.status?.state, JobState.QUEUED);
    assert.equal(refused.status?.attempt, 0, "a refusal does not use up an attempt");

    const other = node(server);
    await other.register();
    await other.openStreamReady();
    const taken = await other.nextAssignment();
    assert.equal(taken.jobId, "job-pull");
    assert.equal(taken.attempt, 1);
    await other.run(taken);
    await rejectsWith(
      puller.clients.nodes.assignJob({ protocolVersion: V1, nodeAddress: other.address }),
      Code.PermissionDenied,
    );
  });

  test("a restart of the job server loses nothing: the node reconnects and finishes its job", async () => {
    const name = `restart${++space}`;
    const first = await startTestJobServer(backend, name);
    const client = signedClients(first.url, first.address);
    const worker = new TestNode(first.url, first.address);
    await worker.register();
    await worker.openStreamReady();
    await client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("job-restart") });
    await client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("job-queued") });
    const assignment = await worker.nextAssignment();
    await worker.accept(assignment);
    await worker.progress(assignment, 0.5);
    worker.close();
    client.close();
    await first.close();

    const second = await startTestJobServer(backend, name);
    closers.push(() => second.close());
    assert.equal(second.address, first.address, "same key");
    const again = signedClients(second.url, second.address, client.keyPair);
    closers.push(() => again.close());
    const resumed = new TestNode(second.url, second.address, { keyPair: worker.clients.keyPair });
    closers.push(() => resumed.close());
    const running = await again.jobs.getJobStatus({ protocolVersion: V1, jobId: "job-restart" });
    assert.equal(running.status?.state, JobState.RUNNING);
    assert.equal(running.status?.currentNodeAddress, worker.address);

    await resumed.openStreamReady();
    const beat = await resumed.heartbeat([assignment.leaseId], [assignment.jobId]);
    assert.equal(beat.reregisterRequired, false);
    assert.equal(beat.leaseExtensions[0]?.leaseId, assignment.leaseId);
    const answer = await resumed.reportResult(assignment, [predictions()]);
    assert.equal(answer.status?.state, JobState.COMPLETED);
    await resumed.closeLease(assignment);
    const next = await resumed.nextAssignment();
    assert.equal(next.jobId, "job-queued");
    const done = await again.jobs.getJobStatus({ protocolVersion: V1, jobId: "job-restart" });
    assert.equal(done.status?.attempt, 1, "the job was not run twice");
    const updates = watchJob(again, "job-restart");
    const current = await updates.take(() => true);
    assert.equal(current.status?.state, JobState.COMPLETED);
  });

  test("a client's unfinished jobs are capped", async () => {
    const { client } = await start({ MAX_QUEUED_JOBS_PER_CLIENT: "2" });
    await client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("cap-1") });
    await client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("cap-2") });
    await rejectsWith(
      client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("cap-3") }),
      Code.ResourceExhausted,
      /2/,
    );
    await client.jobs.cancelJob({ protocolVersion: V1, jobId: "cap-1" });
    const third = await client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("cap-3") });
    assert.equal(third.created, true);
  });

  test("artifacts are read by the job's owner and the node that ran it, not by strangers", async () => {
    const { server, client } = await start();
    const worker = node(server);
    await worker.register();
    await worker.openStreamReady();
    await client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("job-art") });
    const assignment = await worker.nextAssignment();
    await worker.accept(assignment);
    const ref = await worker.upload(assignment, predictions());
    const artifactId = ref.uri.replace("artifact://", "");
    const byOwner = await client.artifacts.getArtifact({ protocolVersion: V1, artifactId });
    assert.equal(byOwner.artifact?.jobId, "job-art");
    const stranger = signedClients(server.url, server.address);
    closers.push(() => stranger.close());
    await rejectsWith(
      stranger.artifacts.getArtifact({ protocolVersion: V1, artifactId }),
      Code.PermissionDenied,
    );
    // A node without the lease may not upload for the job.
    const intruder = node(server);
    await intruder.register();
    await rejectsWith(intruder.upload(assignment, predictions("{}\n")), Code.PermissionDenied);
  });
});
