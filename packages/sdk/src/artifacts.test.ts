import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { downloadArtifact, uploadArtifact } from "./artifacts.js";
import { type FakeArtifactServer, startFakeArtifactServer } from "./test-artifacts-server.js";

let dir: string;
let n = 0;
const servers: FakeArtifactServer[] = [];

/** A fake server closed when the file's tests end. */
async function fake(maxChunkBytes?: number): Promise<FakeArtifactServer> {
  const server = await startFakeArtifactServer(maxChunkBytes);
  servers.push(server);
  return server;
}
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-sdk-artifacts-"));
});
after(async () => {
  await Promise.all(servers.map((server) => server.close()));
  await rm(dir, { recursive: true, force: true });
});

/** A fresh path in the scratch directory. */
function scratch(name: string): string {
  n += 1;
  return join(dir, `${n}-${name}`);
}

function digestOf(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function rejectsWithCode(promise: Promise<unknown>, code: Code, message?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, code, `${Code[error.code]}: ${error.rawMessage}`);
    if (message !== undefined) assert.match(error.rawMessage, message);
    return true;
  });
}

const meta = { name: "weights", mediaType: "application/octet-stream" };

test("uploads a file in the server's chunk size and downloads it back", async () => {
  const server = await fake(700);
  const content = randomBytes(5_000);
  const source = scratch("source.bin");
  await writeFile(source, content);
  const progress: number[] = [];
  const artifact = await uploadArtifact(server.client, { path: source }, meta, {
    onProgress: (sent, total) => {
      assert.equal(total, content.length);
      progress.push(sent);
    },
  });
  assert.equal(artifact.content?.digest, digestOf(content));
  assert.equal(artifact.content?.uri, `artifact://${artifact.artifactId}`);
  assert.deepEqual(progress, [0, 700, 1400, 2100, 2800, 3500, 4200, 4900, 5000, 5000]);

  const dest = scratch("dest.bin");
  const downloaded = await downloadArtifact(server.client, artifact.artifactId, dest);
  assert.equal(downloaded.artifactId, artifact.artifactId);
  assert.deepEqual(await readFile(dest), content);
  await assert.rejects(stat(`${dest}.partial`), { code: "ENOENT" });
});

test("an upload stream cut by a deadline is reopened where the server stopped", async () => {
  const server = await fake(1000);
  server.cutUploadsAfterChunks = [2, 1];
  const content = randomBytes(4_500);
  const artifact = await uploadArtifact(server.client, { bytes: content }, meta);
  assert.equal(artifact.content?.digest, digestOf(content));
  assert.deepEqual(server.uploadStreams, [0, 2000, 3000]);
  assert.deepEqual(
    server.begins.map((b) => b.committedOffset),
    [0, 2000, 3000],
  );
});

test("an upload refused by the server is not retried", async () => {
  const server = await fake();
  server.uploadError = new ConnectError("bad chunk", Code.InvalidArgument);
  await rejectsWithCode(
    uploadArtifact(server.client, { bytes: randomBytes(10) }, meta),
    Code.InvalidArgument,
  );
  assert.equal(server.begins.length, 1);
});

test("an upload that keeps failing without progress gives up", async () => {
  const server = await fake();
  server.uploadError = new ConnectError("down", Code.Unavailable);
  await rejectsWithCode(
    uploadArtifact(server.client, { bytes: randomBytes(10) }, meta),
    Code.Unavailable,
  );
  assert.equal(server.begins.length, 4, "three attempts without progress, then the answer");
});

test("uploading the same thing again resumes the same upload and answers its artifact", async () => {
  const server = await fake();
  const content = randomBytes(2_500);
  const first = await uploadArtifact(server.client, { bytes: content }, meta);
  // The combined form of the batch contract works too.
  const again = await uploadArtifact(server.client, { bytes: content, ...meta });
  assert.equal(again.artifactId, first.artifactId);
  assert.equal(server.uploadStreams.length, 1, "no chunk sent the second time");
  const ids = new Set(server.begins.map((b) => b.uploadId));
  assert.equal(ids.size, 1, "the default upload id follows the content and metadata");
  await uploadArtifact(server.client, { bytes: content }, { ...meta, name: "other" });
  assert.equal(new Set(server.begins.map((b) => b.uploadId)).size, 2);
});

test("an aborted upload rejects with canceled", async () => {
  const server = await fake(100);
  const controller = new AbortController();
  await rejectsWithCode(
    uploadArtifact(server.client, { bytes: randomBytes(1_000) }, meta, {
      signal: controller.signal,
      onProgress: (sent) => {
        if (sent >= 300) controller.abort();
      },
    }),
    Code.Canceled,
  );
});

test("a download resumes from the partial file", async () => {
  const server = await fake(1000);
  const content = randomBytes(3_333);
  const artifact = server.addArtifact(content);
  const dest = scratch("resume.bin");
  await writeFile(`${dest}.partial`, content.subarray(0, 1_500));
  const progress: number[] = [];
  await downloadArtifact(server.client, artifact.artifactId, dest, {
    onProgress: (received) => progress.push(received),
  });
  assert.deepEqual(server.downloadOffsets, [1_500]);
  assert.equal(progress[0], 1_500);
  assert.deepEqual(await readFile(dest), content);
});

test("a partial file with other content is detected and the download starts over", async () => {
  const server = await fake(1000);
  const content = randomBytes(2_000);
  const artifact = server.addArtifact(content);
  const dest = scratch("stale.bin");
  await writeFile(`${dest}.partial`, randomBytes(700));
  await downloadArtifact(server.client, artifact.artifactId, dest);
  assert.deepEqual(server.downloadOffsets, [700, 0]);
  assert.deepEqual(await readFile(dest), content);
});

test("a chunk failing its SHA-256 is fetched again; one that always fails is an error", async () => {
  const server = await fake(1000);
  const content = randomBytes(3_000);
  const artifact = server.addArtifact(content);
  server.corruptDownloadChunks = 1;
  const dest = scratch("corrupt.bin");
  await downloadArtifact(server.client, artifact.artifactId, dest);
  assert.deepEqual(await readFile(dest), content);
  assert.deepEqual(server.downloadOffsets, [0, 0]);

  server.corruptDownloadChunks = 100;
  const dest2 = scratch("corrupt2.bin");
  await rejectsWithCode(
    downloadArtifact(server.client, artifact.artifactId, dest2),
    Code.Aborted,
    /failed its SHA-256/,
  );
  await assert.rejects(stat(dest2), { code: "ENOENT" });
});

test("a download stream cut by a deadline is reopened at the last offset", async () => {
  const server = await fake(1000);
  const content = randomBytes(3_500);
  const artifact = server.addArtifact(content);
  server.cutDownloadsAfterChunks = [2];
  const dest = scratch("cut.bin");
  await downloadArtifact(server.client, artifact.artifactId, dest);
  assert.deepEqual(server.downloadOffsets, [0, 2000]);
  assert.deepEqual(await readFile(dest), content);
});

test("content that does not match the artifact's digest is data_loss and leaves no file", async () => {
  const server = await fake(1000);
  const artifact = server.addArtifact(randomBytes(1_200), digestOf(randomBytes(5)));
  const dest = scratch("liar.bin");
  await rejectsWithCode(
    downloadArtifact(server.client, artifact.artifactId, dest),
    Code.DataLoss,
    /not its digest/,
  );
  await assert.rejects(stat(dest), { code: "ENOENT" });
  await assert.rejects(stat(`${dest}.partial`), { code: "ENOENT" });
});

test("an aborted download keeps its partial file for the next attempt", async () => {
  const server = await fake(100);
  const content = randomBytes(1_000);
  const artifact = server.addArtifact(content);
  const dest = scratch("abort.bin");
  const controller = new AbortController();
  await rejectsWithCode(
    downloadArtifact(server.client, artifact.artifactId, dest, {
      signal: controller.signal,
      onProgress: (received) => {
        if (received >= 500) controller.abort();
      },
    }),
    Code.Canceled,
  );
  const kept = (await stat(`${dest}.partial`)).size;
  assert.ok(kept >= 500 && kept < 1_000, `kept ${kept}`);
  await downloadArtifact(server.client, artifact.artifactId, dest);
  assert.equal(server.downloadOffsets.at(-1), kept);
  assert.deepEqual(await readFile(dest), content);
});

test("an empty artifact downloads to an empty file", async () => {
  const server = await fake();
  const artifact = await uploadArtifact(server.client, { bytes: new Uint8Array(0) }, meta);
  const dest = scratch("empty.bin");
  await downloadArtifact(server.client, artifact.artifactId, dest);
  assert.equal((await readFile(dest)).length, 0);
});
