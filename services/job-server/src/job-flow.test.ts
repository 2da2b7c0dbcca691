/**
 * The batch-job path end to end over the network, on SQLite and PostgreSQL: a real job server on
 * port 0, signed clients, and test nodes that drive the real NodeService / JobStatusService /
 * ArtifactService.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { signComputeCompletion } from "@tessera/identity/validation-bundle";
import { JobFailureReason, JobState, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { JobService } from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { LeaseOutcome } from "@tessera/proto/tessera/job/v1/node_service_pb.js";
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

await describeEachStore(
  "job server: submit, assignment, progress, result",
  (backend: StoreBackend) => {
    let space = 0;
    let server: TestJobServer;
    let client: SignedClients;
    const closers: Array<() => unknown> = [];

    beforeEach(async () => {
      space += 1;
      server = await startTestJobServer(backend, `flow${space}`);
      client = signedClients(server.url, server.address);
      closers.push(() => client.close());
    });
    afterEach(async () => {
      for (const close of closers.splice(0).reverse()) await close();
      await server.close();
    });

    function node(options: ConstructorParameters<typeof TestNode>[2] = {}) {
      const created = new TestNode(server.url, server.address, options);
      closers.push(() => created.close());
      return created;
    }

    test("SubmitJob is idempotent on job_id, refuses another spec and names bad fields", async () => {
      const spec = freeSpec("job-a");
      const first = await client.jobs.submitJob({ protocolVersion: V1, spec });
      assert.equal(first.created, true);
      assert.equal(first.job?.status?.state, JobState.QUEUED);
      assert.equal(first.job?.ownerAddress, client.keyPair.address);

      const again = await client.jobs.submitJob({ protocolVersion: V1, spec });
      assert.equal(again.created, false);
      assert.equal(again.job?.spec?.jobId, "job-a");

      await rejectsWith(
        client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("job-a", { epochs: 7 }) }),
        Code.AlreadyExists,
        /job-a/,
      );
      const other = signedClients(server.url, server.address);
      closers.push(() => other.close());
      await rejectsWith(other.jobs.submitJob({ protocolVersion: V1, spec }), Code.AlreadyExists);

      const bad = freeSpec("job-b");
      if (bad.dataset) bad.dataset.digest = "md5:123";
      await rejectsWith(
        client.jobs.submitJob({ protocolVersion: V1, spec: bad }),
        Code.InvalidArgument,
        /^spec\.dataset\.digest: /,
      );
      await rejectsWith(
        client.jobs.submitJob({
          protocolVersion: V1,
          spec: freeSpec("job-c", { jobType: JobType.UNSPECIFIED }),
        }),
        Code.InvalidArgument,
        /spec\.job_type/,
      );
      await rejectsWith(
        client.jobs.submitJob({
          protocolVersion: V1,
          spec: freeSpec("job-d", { maxAttempts: 11 }),
        }),
        Code.InvalidArgument,
        /spec\.max_attempts/,
      );
      await rejectsWith(
        client.jobs.submitJob({
          protocolVersion: V1,
          spec: freeSpec("job-e", { paymentAmount: "100" }),
        }),
        Code.InvalidArgument,
        /spec\.payer_address/,
      );
      await rejectsWith(
        client.jobs.submitJob({ protocolVersion: { major: 2, minor: 0, patch: 0 }, spec }),
        Code.FailedPrecondition,
        /2\.0\.0/,
      );

      const unsigned = createClient(
        JobService,
        createConnectTransport({ baseUrl: server.url, httpVersion: "2" }),
      );
      await rejectsWith(
        unsigned.submitJob({ protocolVersion: V1, spec: freeSpec("job-f") }),
        Code.Unauthenticated,
      );
      // Nothing refused was stored.
      const listed = await client.jobs.listJobs({ protocolVersion: V1 });
      assert.deepEqual(
        listed.jobs.map((job) => job.spec?.jobId),
        ["job-a"],
      );
    });

    test("a node's stream gets the assignment; watchers see progress; a signed result completes the job", async () => {
      const worker = node();
      await worker.register();
      await worker.openStreamReady();
      const { job } = await client.jobs.submitJob({
        protocolVersion: V1,
        spec: freeSpec("job-run"),
      });
      assert.ok(job);

      const assignment = await worker.nextAssignment();
      assert.equal(assignment.jobId, "job-run");
      assert.equal(assignment.attempt, 1);
      assert.equal(assignment.issuerAddress, server.address);
      assert.equal(assignment.ownerAddress, client.keyPair.address);
      assert.equal(assignment.spec?.jobId, "job-run");

      const accepted = await worker.accept(assignment);
      assert.equal(accepted.status?.state, JobState.ASSIGNED);
      const progress = await worker.progress(assignment, 0.25, { "eval/loss": 0.5 });
      assert.equal(progress.shouldContinue, true);

      // A late subscriber gets the current state first, then every change, and the stream ends
      // after the terminal state.
      const updates = watchJob(client, "job-run");
      const first = await updates.take(() => true);
      assert.equal(first.status?.state, JobState.RUNNING);
      assert.equal(first.status?.progress, 0.25);
      assert.equal(first.status?.metrics["eval/loss"], 0.5);

      await worker.progress(assignment, 0.75, { "eval/loss": 0.25 });
      const later = await updates.take((update) => update.status?.progress === 0.75);
      assert.deepEqual(later.liveMetrics, { "eval/loss": 0.25 });
      assert.equal(later.logs[0]?.message, "at 75%");
      assert.ok(later.sequence > first.sequence);

      const answer = await worker.reportResult(assignment, [predictions()]);
      assert.equal(answer.status?.state, JobState.COMPLETED);
      const done = await updates.take((update) => update.status?.state === JobState.COMPLETED);
      assert.equal(done.result?.artifacts[0]?.name, "predictions");
      await updates.take(() => false, 5_000).catch(() => undefined);
      assert.equal(updates.ended, true, "the stream ends after the terminal state");

      const closed = await worker.closeLease(assignment);
      assert.equal(closed.status?.state, JobState.COMPLETED);

      const status = await client.jobs.getJobStatus({ protocolVersion: V1, jobId: "job-run" });
      assert.equal(status.status?.state, JobState.COMPLETED);
      assert.equal(status.result?.nodeAddress, worker.address);
      assert.equal(status.result?.finalMetrics["eval/accuracy"], 0.9);
      assert.equal(status.result?.computeCompletion?.requestId, "job-run");

      // Resuming after a sequence replays only what came after it.
      const resumed = watchJob(client, "job-run", later.sequence);
      const next = await resumed.take(() => true);
      assert.equal(next.sequence, later.sequence + 1n);

      // The same result again is answered as it is (idempotent per lease).
      assert.ok(worker.lastReport);
      const replay = await worker.clients.status.reportJobResult(worker.lastReport);
      assert.equal(replay.status?.state, JobState.COMPLETED);

      const metrics = await worker.clients.nodes.getNodeMetrics({
        protocolVersion: V1,
        nodeAddress: worker.address,
      });
      assert.equal(metrics.jobsCompleted, 1n);
      assert.equal(metrics.jobsRunning, 0);
    });

    test("a result with a bad signature, a wrong hash or a stale lease is refused", async () => {
      const worker = node();
      await worker.register();
      await worker.openStreamReady();
      await client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("job-bad") });
      const assignment = await worker.nextAssignment();
      await worker.accept(assignment);

      await rejectsWith(
        worker.reportResult(assignment, [predictions()], (completion) => ({
          ...completion,
          signature: new Uint8Array(64),
        })),
        Code.Unauthenticated,
        /signature/,
      );
      // A valid signature over a hash that is not the artifacts' manifest.
      await rejectsWith(
        worker.reportResult(assignment, [predictions()], (completion) =>
          signComputeCompletion(
            { ...completion, resultHash: new Uint8Array(32), signature: new Uint8Array(0) },
            worker.clients.keyPair,
          ),
        ),
        Code.InvalidArgument,
        /result_hash/,
      );
      const stranger = node();
      await stranger.register();
      await rejectsWith(stranger.reportResult(assignment, [predictions()]), Code.PermissionDenied);

      // The node gives the job back: its lease is stale, and a report under it is refused.
      const released = await worker.closeLease(assignment, LeaseOutcome.RELEASED, "shutting down");
      assert.equal(
        released.status?.state === JobState.QUEUED || released.status?.state === JobState.ASSIGNED,
        true,
      );
      await rejectsWith(
        worker.progress(assignment, 0.9),
        Code.FailedPrecondition,
        /not the current lease/,
      );
      const second = await worker.nextAssignment();
      assert.equal(second.jobId, "job-bad");
      assert.notEqual(second.leaseId, assignment.leaseId);
      await rejectsWith(worker.reportResult(assignment, [predictions()]), Code.FailedPrecondition);
      const answer = await worker.run(second);
      assert.equal(answer.status?.state, JobState.COMPLETED);
    });

    test("ListJobs pages newest first, filters, and shows only the caller's jobs", async () => {
      for (let i = 0; i < 5; i += 1) {
        await client.jobs.submitJob({
          protocolVersion: V1,
          spec: freeSpec(`list-${i}`, i === 2 ? { jobType: JobType.EVALUATION } : {}),
        });
      }
      const first = await client.jobs.listJobs({ protocolVersion: V1, pageSize: 2 });
      assert.equal(first.totalCount, 5n);
      assert.equal(first.jobs.length, 2);
      const second = await client.jobs.listJobs({
        protocolVersion: V1,
        pageSize: 2,
        pageToken: first.nextPageToken,
      });
      const third = await client.jobs.listJobs({
        protocolVersion: V1,
        pageSize: 2,
        pageToken: second.nextPageToken,
      });
      assert.equal(third.nextPageToken, "");
      const ids = [...first.jobs, ...second.jobs, ...third.jobs].map((job) => job.spec?.jobId);
      assert.equal(new Set(ids).size, 5);
      const created = [...first.jobs, ...second.jobs, ...third.jobs].map(
        (job) => Number(job.createdAt?.seconds ?? 0n) * 1e3 + (job.createdAt?.nanos ?? 0) / 1e6,
      );
      assert.deepEqual(
        created,
        [...created].sort((a, b) => b - a),
        "newest first",
      );

      const evaluations = await client.jobs.listJobs({
        protocolVersion: V1,
        jobType: JobType.EVALUATION,
      });
      assert.deepEqual(
        evaluations.jobs.map((job) => job.spec?.jobId),
        ["list-2"],
      );
      await rejectsWith(
        client.jobs.listJobs({
          protocolVersion: V1,
          pageSize: 2,
          pageToken: first.nextPageToken,
          state: JobState.QUEUED,
        }),
        Code.InvalidArgument,
        /page_token/,
      );

      const other = signedClients(server.url, server.address);
      closers.push(() => other.close());
      assert.equal((await other.jobs.listJobs({ protocolVersion: V1 })).totalCount, 0n);
      await rejectsWith(
        other.jobs.listJobs({ protocolVersion: V1, ownerAddress: client.keyPair.address }),
        Code.PermissionDenied,
      );
      await rejectsWith(
        other.jobs.getJobStatus({ protocolVersion: V1, jobId: "list-0" }),
        Code.PermissionDenied,
      );
      await rejectsWith(
        client.jobs.getJobStatus({ protocolVersion: V1, jobId: "nope" }),
        Code.NotFound,
      );
    });

    test("CancelJob stops the node, answers the same again, and refuses finished jobs", async () => {
      const worker = node();
      await worker.register();
      await worker.openStreamReady();
      await client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("job-cancel") });
      const assignment = await worker.nextAssignment();
      await worker.accept(assignment);
      await worker.progress(assignment, 0.1);

      const cancelled = await client.jobs.cancelJob({
        protocolVersion: V1,
        jobId: "job-cancel",
        reason: "changed my mind",
      });
      assert.equal(cancelled.status?.state, JobState.CANCELLED);
      assert.equal(cancelled.refundIssued, false);
      const cancellation = await worker.nextCancellation();
      assert.equal(cancellation.leaseId, assignment.leaseId);
      assert.match(cancellation.reason, /changed my mind/);
      const progress = await worker.progress(assignment, 0.2);
      assert.equal(progress.shouldContinue, false);
      const beat = await worker.heartbeat([assignment.leaseId]);
      assert.equal(beat.cancellations[0]?.leaseId, assignment.leaseId);
      await worker.closeLease(assignment, LeaseOutcome.CANCELLED);

      const again = await client.jobs.cancelJob({ protocolVersion: V1, jobId: "job-cancel" });
      assert.equal(again.status?.state, JobState.CANCELLED);

      await client.jobs.submitJob({ protocolVersion: V1, spec: freeSpec("job-done") });
      const next = await worker.nextAssignment();
      await worker.run(next);
      await rejectsWith(
        client.jobs.cancelJob({ protocolVersion: V1, jobId: "job-done" }),
        Code.FailedPrecondition,
        /COMPLETED/,
      );
      const status = await client.jobs.getJobStatus({ protocolVersion: V1, jobId: "job-cancel" });
      assert.equal(status.status?.failureReason, JobFailureReason.UNSPECIFIED);
    });
  },
);
