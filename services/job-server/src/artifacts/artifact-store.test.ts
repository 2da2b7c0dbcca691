import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { appendFile, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import {
  type ArtifactStore,
  type BeginUploadInput,
  createArtifactStore,
} from "./artifact-store.js";
import { ArtifactError } from "./errors.js";
import { openTestStore, silentLogger, type TestTables } from "./test-artifact-server.js";

const CHUNK = 1024;
const TTL_MS = 60_000;

function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

function digestOf(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function rejectsWithKind(promise: Promise<unknown>, kind: string, message?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ArtifactError, `expected an ArtifactError, got ${String(error)}`);
    assert.equal(error.kind, kind, error.message);
    if (message !== undefined) assert.match(error.message, message);
    return true;
  });
}

await describeEachStore("artifact store", (backend: StoreBackend) => {
  let space = 0;
  let dataDir: string;
  let clock: number;
  const owner = "tsr1owner";

  beforeEach(async () => {
    space += 1;
    clock = 1_700_000_000_000;
    dataDir = await mkdtemp(join(tmpdir(), "tessera-artifact-store-"));
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  async function open(spaceName = `s${space}`): Promise<ArtifactStore> {
    const store = await openTestStore(backend, spaceName);
    return createArtifactStore<TestTables>({
      store,
      dataDir,
      logger: silentLogger,
      maxChunkBytes: CHUNK,
      uploadTtlMs: TTL_MS,
      sweepIntervalMs: 0,
      now: () => clock,
    });
  }

  function input(uploadId: string, content: Uint8Array): BeginUploadInput {
    return {
      owner,
      uploadId,
      name: "data",
      mediaType: "application/octet-stream",
      sizeBytes: content.length,
      digest: digestOf(content),
      jobId: "",
      leaseId: "",
    };
  }

  const chunkAt = (uploadId: string, content: Uint8Array, offset: number) => {
    const data = content.subarray(offset, Math.min(offset + CHUNK, content.length));
    return { owner, uploadId, offset, data, sha256: sha256(data) };
  };

  const partials = () => readdir(join(dataDir, "artifacts", "uploads"));

  test("an upload survives a restart: the next store resumes from the committed offset", async () => {
    const content = randomBytes(3 * CHUNK + 5);
    const first = await open();
    await first.beginUpload(input("restart", content));
    await first.appendChunk(chunkAt("restart", content, 0));
    await first.appendChunk(chunkAt("restart", content, CHUNK));
    await first.close();

    const second = await open();
    const resumed = await second.beginUpload(input("restart", content));
    assert.equal(resumed.committedOffset, 2 * CHUNK);
    await second.appendChunk(chunkAt("restart", content, 2 * CHUNK));
    await second.appendChunk(chunkAt("restart", content, 3 * CHUNK));
    const artifact = await second.commitUpload({
      owner,
      uploadId: "restart",
      digest: digestOf(content),
      sizeBytes: content.length,
    });
    const read: Uint8Array[] = [];
    for await (const chunk of second.readArtifact(artifact, { offset: 0, length: 0 })) {
      assert.deepEqual(chunk.sha256, sha256(chunk.data));
      read.push(chunk.data);
    }
    assert.deepEqual(Buffer.concat(read), content);
  });

  test("bytes a crash left past the committed offset are cut before the commit's check", async () => {
    const content = randomBytes(2 * CHUNK);
    const artifacts = await open();
    await artifacts.beginUpload(input("torn", content));
    await artifacts.appendChunk(chunkAt("torn", content, 0));
    await artifacts.appendChunk(chunkAt("torn", content, CHUNK));
    const [partial] = await partials();
    assert.ok(partial !== undefined);
    // As if a third write had reached the disk but not the database.
    await appendFile(join(dataDir, "artifacts", "uploads", partial), randomBytes(100));
    const artifact = await artifacts.commitUpload({
      owner,
      uploadId: "torn",
      digest: digestOf(content),
      sizeBytes: content.length,
    });
    assert.equal(artifact.content?.sizeBytes, BigInt(content.length));
  });

  test("two writers of the same offset: one chunk is stored, the other is told the new offset", async () => {
    const content = randomBytes(2 * CHUNK);
    const artifacts = await open();
    await artifacts.beginUpload(input("race", content));
    const outcomes = await Promise.allSettled([
      artifacts.appendChunk(chunkAt("race", content, 0)),
      artifacts.appendChunk(chunkAt("race", content, 0)),
    ]);
    assert.deepEqual(
      outcomes.map((o) => o.status),
      ["fulfilled", "rejected"],
    );
    await rejectsWithKind(
      Promise.reject((outcomes[1] as PromiseRejectedResult).reason),
      "failed_precondition",
      /send chunks from offset 1024/,
    );
    assert.equal((await artifacts.beginUpload(input("race", content))).committedOffset, CHUNK);
  });

  test("an untouched upload expires: it is swept with its partial file and cannot be resumed", async () => {
    const content = randomBytes(2 * CHUNK);
    const artifacts = await open();
    const begun = await artifacts.beginUpload(input("old", content));
    assert.equal(begun.expiresAtMs, clock + TTL_MS);
    await artifacts.appendChunk(chunkAt("old", content, 0));
    clock += TTL_MS - 1;
    assert.deepEqual(await artifacts.sweepExpired(), { expiredUploads: 0, orphanFiles: 0 });
    // Activity moves the expiry forward.
    await artifacts.beginUpload(input("old", content));
    clock += TTL_MS - 1;
    assert.equal((await artifacts.sweepExpired()).expiredUploads, 0);
    clock += 1;
    await rejectsWithKind(
      artifacts.appendChunk(chunkAt("old", content, CHUNK)),
      "not_found",
      /unknown or expired/,
    );
    assert.deepEqual(await partials(), [], "the expired upload's bytes are gone");

    await artifacts.beginUpload(input("other", content));
    await artifacts.appendChunk(chunkAt("other", content, 0));
    clock += TTL_MS;
    assert.deepEqual(await artifacts.sweepExpired(), { expiredUploads: 1, orphanFiles: 0 });
    assert.deepEqual(await partials(), []);
    assert.equal(await artifacts.findUpload(owner, "other"), undefined);
    assert.equal((await artifacts.beginUpload(input("other", content))).committedOffset, 0);
  });

  test("the sweep deletes old partial files that no upload refers to", async () => {
    const artifacts = await open();
    const content = randomBytes(10);
    await artifacts.beginUpload(input("live", content));
    await artifacts.appendChunk(chunkAt("live", content, 0));
    const uploads = join(dataDir, "artifacts", "uploads");
    const orphan = join(uploads, "0123456789abcdef0123456789abcdef.partial");
    const fresh = join(uploads, "fedcba9876543210fedcba9876543210.partial");
    await writeFile(orphan, "left by a crash");
    await writeFile(fresh, "just created");
    const longAgo = new Date(Date.now() - 3_600_000);
    await utimes(orphan, longAgo, longAgo);
    const [live] = (await partials()).filter(
      (name) =>
        name !== "0123456789abcdef0123456789abcdef.partial" &&
        name !== "fedcba9876543210fedcba9876543210.partial",
    );
    assert.ok(live !== undefined);
    await utimes(join(uploads, live), longAgo, longAgo);

    assert.deepEqual(await artifacts.sweepExpired(), { expiredUploads: 0, orphanFiles: 1 });
    assert.deepEqual(
      (await partials()).sort(),
      [live, "fedcba9876543210fedcba9876543210.partial"].sort(),
    );
  });

  test("a committed upload answers its artifact until it expires; the artifact stays", async () => {
    const content = randomBytes(100);
    const artifacts = await open();
    await artifacts.beginUpload(input("done", content));
    await artifacts.appendChunk(chunkAt("done", content, 0));
    const artifact = await artifacts.commitUpload({
      owner,
      uploadId: "done",
      digest: digestOf(content),
      sizeBytes: 100,
    });
    const again = await artifacts.beginUpload(input("done", content));
    assert.equal(again.existingArtifact?.artifactId, artifact.artifactId);
    clock += TTL_MS;
    assert.equal((await artifacts.sweepExpired()).expiredUploads, 1);
    assert.equal((await artifacts.getArtifact(artifact.artifactId))?.name, "data");
    // The content is still the caller's: a new upload of it is answered without bytes.
    const fresh = await artifacts.beginUpload(input("done-again", content));
    assert.equal(fresh.existingArtifact?.artifactId, artifact.artifactId);
  });

  test("reads check their range", async () => {
    const content = randomBytes(2 * CHUNK + 1);
    const artifacts = await open();
    await artifacts.beginUpload(input("r", content));
    for (let offset = 0; offset < content.length; offset += CHUNK) {
      await artifacts.appendChunk(chunkAt("r", content, offset));
    }
    const artifact = await artifacts.commitUpload({
      owner,
      uploadId: "r",
      digest: digestOf(content),
      sizeBytes: content.length,
    });
    const collect = async (offset: number, length: number) => {
      const out: Array<[number, number]> = [];
      for await (const c of artifacts.readArtifact(artifact, { offset, length })) {
        out.push([c.offset, c.data.length]);
      }
      return out;
    };
    assert.deepEqual(await collect(0, 0), [
      [0, CHUNK],
      [CHUNK, CHUNK],
      [2 * CHUNK, 1],
    ]);
    assert.deepEqual(await collect(10, 5), [[10, 5]]);
    assert.deepEqual(await collect(2 * CHUNK, 100), [[2 * CHUNK, 1]]);
    assert.deepEqual(await collect(content.length, 0), []);
    await rejectsWithKind(collect(content.length + 1, 0), "invalid_argument", /offset/);
  });

  test("a missing blob is data_loss, not a short read", async () => {
    const content = randomBytes(10);
    const artifacts = await open();
    await artifacts.beginUpload(input("lost", content));
    await artifacts.appendChunk(chunkAt("lost", content, 0));
    const artifact = await artifacts.commitUpload({
      owner,
      uploadId: "lost",
      digest: digestOf(content),
      sizeBytes: 10,
    });
    await rm(join(dataDir, "artifacts", "sha256"), { recursive: true, force: true });
    await rejectsWithKind(
      (async () => {
        for await (const _ of artifacts.readArtifact(artifact, { offset: 0, length: 0 })) {
          assert.fail("no bytes");
        }
      })(),
      "data_loss",
    );
  });
});
