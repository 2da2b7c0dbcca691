/**
 * Two job-server replicas over one PostgreSQL share the queue: both race to lease the same
 * queued jobs for their own nodes, and no job is ever leased twice or left behind.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { JobState } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { describeOnPostgres, type StoreBackend } from "@tessera/store/testing";
import {
  freeSpec,
  signedClients,
  startTestJobServer,
  type TestJobServer,
  TestNode,
  V1,
  watchJob,
} from "./test-support.js";

const JOBS = 40;

await describeOnPostgres("job server replicas", (backend: StoreBackend) => {
  const closers: Array<() => unknown> = [];
  after(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  test("replicas over one PostgreSQL never lease one job twice", async () => {
    const replicas: TestJobServer[] = [];
    for (let i = 0; i < 2; i += 1) {
      // One queue (the same schema) and one key: replicas behind one address.
      const replica = await startTestJobServer(
        backend,
        "replicas",
        { DISPATCH_POLL_MS: "20" },
        "shared",
      );
      closers.push(() => replica.close());
      replicas.push(replica);
    }
    const [a, b] = replicas as [TestJobServer, TestJobServer];
    assert.equal(a.address, b.address);
    const client = signedClients(a.url, a.address);
    const clientB = signedClients(b.url, b.address, client.keyPair);
    closers.push(
      () => client.close(),
      () => clientB.close(),
    );

    // The queue fills before any node connects, so both replicas then race for the same jobs.
    for (let i = 0; i < JOBS; i += 1) {
      const via = i % 2 === 0 ? client : clientB;
      await via.jobs.submitJob({ protocolVersion: V1, spec: freeSpec(`replica-${i}`) });
    }

    // A watcher on one replica follows a job that nodes of either replica may run.
    const watched = watchJob(clientB, "replica-0");
    const queued = await watched.take(() => true);
    assert.equal(queued.status?.state, JobState.QUEUED);

    const leased: Array<{ jobId: string; leaseId: string; node: string }> = [];
    const workers: Promise<void>[] = [];
    const nodes: TestNode[] = [];
    for (const [index, replica] of [a, a, b, b].entries()) {
      const worker = new TestNode(replica.url, replica.address, { maxConcurrentJobs: 2 });
      closers.push(() => worker.close());
      nodes.push(worker);
      await worker.register();
      void index;
    }
    for (const worker of nodes) worker.openStream(2);
    let done = 0;
    for (const worker of nodes) {
      workers.push(
        (async () => {
          while (done < JOBS) {
            const assignment = await worker.nextAssignment(3_000).catch(() => undefined);
            if (assignment === undefined) continue;
            leased.push({
              jobId: assignment.jobId,
              leaseId: assignment.leaseId,
              node: worker.address,
            });
            const answer = await worker.run(assignment);
            if (answer.status?.state === JobState.COMPLETED) done += 1;
          }
        })(),
      );
    }
    const deadline = Date.now() + 60_000;
    while (done < JOBS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(done, JOBS, "every job completed");
    await Promise.all(workers);

    const byJob = new Map<string, number>();
    for (const lease of leased) byJob.set(lease.jobId, (byJob.get(lease.jobId) ?? 0) + 1);
    assert.equal(byJob.size, JOBS);
    assert.deepEqual(
      [...byJob.entries()].filter(([, count]) => count > 1),
      [],
      "no job was leased twice",
    );
    assert.ok(
      new Set(leased.map((lease) => lease.node)).size >= 3,
      "the work was spread over the replicas' nodes",
    );
    const final = await watched.take((update) => update.status?.state === JobState.COMPLETED);
    assert.equal(final.result?.artifacts[0]?.name, "predictions");
    const page = await client.jobs.listJobs({
      protocolVersion: V1,
      state: JobState.COMPLETED,
      pageSize: 100,
    });
    assert.equal(page.totalCount, BigInt(JOBS));
    for (const job of page.jobs) assert.equal(job.status?.attempt, 1);
  });
});
