import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { ArtifactService } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { downloadArtifact, uploadArtifact } from "@tessera/sdk/artifacts";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import { type ArtifactHarness, V1, withArtifactServer } from "./test-artifact-server.js";

const MiB = 1024 * 1024;

function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function digestOf(data: Uint8Array): string {
  return `sha256:${sha256Hex(data)}`;
}

/** Asserts that `promise` fails with `code` and a message matching `message`. */
async function rejectsWithCode(promise: Promise<unknown>, code: Code, message?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, code, `${Code[error.code]}: ${error.rawMessage}`);
    if (message !== undefined) assert.match(error.rawMessage, message);
    return true;
  });
}

/** Writes `size` random bytes to `path` one MiB at a time and returns their digest. */
async function writeRandomFile(path: string, size: number): Promise<string> {
  const hash = createHash("sha256");
  const file = await open(path, "w");
  try {
    for (let written = 0; written < size; ) {
      const chunk = randomBytes(Math.min(MiB, size - written));
      await file.write(chunk);
      hash.update(chunk);
      written += chunk.length;
    }
  } finally {
    await file.close();
  }
  return `sha256:${hash.digest("hex")}`;
}

/** The digest of a file, read as a stream. */
async function digestOfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) hash.update(chunk);
  return `sha256:${hash.digest("hex")}`;
}

/** One chunk of an UploadChunks stream, with a correct checksum unless `sha256` is given. */
function chunk(uploadId: string, offset: number, data: Uint8Array, sha256?: Uint8Array) {
  return {
    protocolVersion: V1,
    uploadId,
    offset: BigInt(offset),
    data,
    sha256: sha256 ?? createHash("sha256").update(data).digest(),
  };
}

async function* stream<T>(...messages: T[]) {
  for (const message of messages) yield message;
}

/** Begins an upload of `content` by hand. */
function begin(
  client: Client<typeof ArtifactService>,
  uploadId: string,
  content: Uint8Array,
  extra: { name?: string; digest?: string; jobId?: string; leaseId?: string } = {},
) {
  return client.beginUpload({
    protocolVersion: V1,
    uploadId,
    name: extra.name ?? "data.bin",
    mediaType: "application/octet-stream",
    sizeBytes: BigInt(content.length),
    digest: extra.digest ?? digestOf(content),
    jobId: extra.jobId ?? "",
    leaseId: extra.leaseId ?? "",
  });
}

/** A scratch directory for the files of the enclosing suite, removed after it. */
function suiteScratch(): () => string {
  let scratch: string | undefined;
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "tessera-artifact-test-"));
  });
  after(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });
  return () => {
    if (scratch === undefined) throw new Error("the scratch directory exists only inside tests");
    return scratch;
  };
}

await describeEachStore("ArtifactService on a real signed server", (backend: StoreBackend) => {
  let space = 0;
  const scratch = suiteScratch();
  /** A path in the scratch directory unique to this test. */
  const scratchFile = (name: string) => join(scratch(), `${space}-${name}`);
  let owner: KeyPair;
  let other: KeyPair;
  const run = (
    body: (h: ArtifactHarness) => Promise<void>,
    options: Omit<Parameters<typeof withArtifactServer>[1], "space"> = {},
  ) => {
    space += 1;
    owner = generateKeyPair();
    other = generateKeyPair();
    return withArtifactServer(backend, { space: `s${space}`, ...options }, body);
  };

  test("a file uploads and downloads back byte for byte, as artifact://<id>", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const source = scratchFile(`round-trip.csv`);
      const content = Buffer.from(
        Array.from({ length: 200_000 }, (_, i) => `${i},${i % 7},${i * 3}\n`).join(""),
      );
      await writeFile(source, content);
      assert.ok(content.length > 2 * MiB, "spans several chunks");

      const artifact = await uploadArtifact(
        client,
        { path: source },
        { name: "train.csv", mediaType: "text/csv", jobId: "job-1" },
      );
      assert.equal(artifact.content?.uri, `artifact://${artifact.artifactId}`);
      assert.equal(artifact.content?.digest, digestOf(content));
      assert.equal(artifact.content?.sizeBytes, BigInt(content.length));
      assert.equal(artifact.content?.mediaType, "text/csv");
      assert.equal(artifact.name, "train.csv");
      assert.equal(artifact.ownerAddress, owner.address);
      assert.equal(artifact.jobId, "job-1");
      assert.equal(artifact.protocolVersion?.major, 1);

      const fetched = await client.getArtifact({
        protocolVersion: V1,
        artifactId: artifact.artifactId,
      });
      assert.equal(fetched.artifact?.content?.digest, artifact.content?.digest);

      const dest = scratchFile(`round-trip.out.csv`);
      const downloaded = await downloadArtifact(client, artifact.artifactId, dest);
      assert.equal(downloaded.artifactId, artifact.artifactId);
      assert.deepEqual(await readFile(dest), content);
      await assert.rejects(stat(`${dest}.partial`), { code: "ENOENT" });

      // The bytes are stored once, by digest; no partial file is left behind.
      assert.deepEqual(await h.blobFiles(), [sha256Hex(content)]);
      assert.deepEqual(await h.partialFiles(), []);
    }));

  test("the same content is stored once; the same upload again answers the existing artifact", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const content = randomBytes(MiB + 17);
      const first = await uploadArtifact(
        client,
        { bytes: content },
        { name: "model", mediaType: "application/onnx" },
      );
      let chunksSent = 0;
      const again = await uploadArtifact(
        client,
        { bytes: content },
        { name: "model", mediaType: "application/onnx", uploadId: "fresh-id" },
        { onProgress: () => (chunksSent += 1) },
      );
      assert.equal(
        again.artifactId,
        first.artifactId,
        "BeginUpload answered the existing artifact",
      );
      assert.equal(chunksSent, 1, "only the final progress report, no chunk");

      const renamed = await uploadArtifact(
        client,
        { bytes: content },
        { name: "model-copy", mediaType: "application/onnx" },
      );
      assert.notEqual(renamed.artifactId, first.artifactId);
      assert.equal(renamed.content?.digest, first.content?.digest);
      assert.equal(await h.artifactCount(), 2);
      assert.deepEqual(await h.blobFiles(), [sha256Hex(content)], "one file per digest");

      // Another caller's identical upload is not answered from this caller's artifacts.
      const theirs = await uploadArtifact(
        h.clientFor(other),
        { bytes: content },
        { name: "model", mediaType: "application/onnx" },
      );
      assert.notEqual(theirs.artifactId, first.artifactId);
      assert.equal(theirs.ownerAddress, other.address);
      assert.deepEqual(await h.blobFiles(), [sha256Hex(content)]);
    }));

  test("an empty artifact round-trips", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const artifact = await uploadArtifact(
        client,
        { bytes: new Uint8Array(0) },
        { name: "empty", mediaType: "application/json" },
      );
      assert.equal(artifact.content?.sizeBytes, 0n);
      const dest = scratchFile(`empty`);
      await downloadArtifact(client, artifact.artifactId, dest);
      assert.equal((await readFile(dest)).length, 0);
    }));

  test("an interrupted upload resumes from the committed offset", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const source = scratchFile(`resume.bin`);
      const size = 6 * MiB + 123;
      const digest = await writeRandomFile(source, size);
      const meta = { name: "weights", mediaType: "application/octet-stream", uploadId: "resume-1" };

      const controller = new AbortController();
      await rejectsWithCode(
        uploadArtifact(client, { path: source }, meta, {
          signal: controller.signal,
          onProgress: (sent) => {
            if (sent >= 3 * MiB) controller.abort();
          },
        }),
        Code.Canceled,
      );
      assert.equal(await h.artifactCount(), 0, "nothing committed");

      const begun = await client.beginUpload({
        protocolVersion: V1,
        uploadId: "resume-1",
        name: "weights",
        mediaType: "application/octet-stream",
        sizeBytes: BigInt(size),
        digest,
      });
      const stored = Number(begun.committedOffset);
      assert.equal(begun.maxChunkBytes, MiB);
      assert.ok(stored >= MiB && stored < size, `stored ${stored} of ${size}`);
      assert.equal(stored % MiB, 0, "whole chunks only");

      const progress: number[] = [];
      const artifact = await uploadArtifact(client, { path: source }, meta, {
        onProgress: (sent) => progress.push(sent),
      });
      assert.equal(progress[0], stored, "the second attempt started where the first stopped");
      assert.equal(progress.at(-1), size);
      assert.equal(artifact.content?.digest, digest);

      const dest = scratchFile(`resume.out`);
      await downloadArtifact(client, artifact.artifactId, dest);
      assert.equal(await digestOfFile(dest), digest);
    }));

  test("a chunk with a bad checksum is refused and nothing of it is stored", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const content = randomBytes(MiB + 10);
      await begin(client, "bad-hash", content);
      const first = content.subarray(0, MiB);
      await rejectsWithCode(
        client.uploadChunks(stream(chunk("bad-hash", 0, first, new Uint8Array(32).fill(7)))),
        Code.InvalidArgument,
        /sha256: does not match/,
      );
      assert.equal((await begin(client, "bad-hash", content)).committedOffset, 0n);
      // A good chunk, then a corrupted one: the good one stays.
      const tampered = Buffer.from(content.subarray(MiB));
      const rightHash = createHash("sha256").update(tampered).digest();
      tampered[0] = (tampered[0] ?? 0) ^ 0xff;
      await rejectsWithCode(
        client.uploadChunks(
          stream(chunk("bad-hash", 0, first), chunk("bad-hash", MiB, tampered, rightHash)),
        ),
        Code.InvalidArgument,
      );
      assert.equal((await begin(client, "bad-hash", content)).committedOffset, BigInt(MiB));
      await rejectsWithCode(
        client.commitUpload({
          protocolVersion: V1,
          uploadId: "bad-hash",
          digest: digestOf(content),
          sizeBytes: BigInt(content.length),
        }),
        Code.FailedPrecondition,
        /incomplete: 1048576 of 1048586 bytes stored; send chunks from offset 1048576/,
      );
      assert.equal(await h.artifactCount(), 0);
      assert.deepEqual(await h.blobFiles(), []);
    }));

  test("a chunk off the committed offset is failed_precondition naming the offset", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const content = randomBytes(2 * MiB + 5);
      await begin(client, "offsets", content);
      await rejectsWithCode(
        client.uploadChunks(stream(chunk("offsets", MiB, content.subarray(MiB, 2 * MiB)))),
        Code.FailedPrecondition,
        /chunk offset 1048576 is not the committed offset 0; send chunks from offset 0/,
      );
      await client.uploadChunks(stream(chunk("offsets", 0, content.subarray(0, MiB))));
      // Sending the first chunk again (a client that lost the answer) is refused the same way.
      await rejectsWithCode(
        client.uploadChunks(stream(chunk("offsets", 0, content.subarray(0, MiB)))),
        Code.FailedPrecondition,
        /send chunks from offset 1048576/,
      );
      const done = await client.uploadChunks(
        stream(
          chunk("offsets", MiB, content.subarray(MiB, 2 * MiB)),
          chunk("offsets", 2 * MiB, content.subarray(2 * MiB)),
        ),
      );
      assert.equal(done.committedOffset, BigInt(content.length));
      assert.equal(await h.artifactCount(), 0, "not an artifact before CommitUpload");
    }));

  test("chunk sizes: above max_chunk_bytes, short but not last, past the size", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const content = randomBytes(3 * MiB);
      await begin(client, "sizes", content);
      await rejectsWithCode(
        client.uploadChunks(stream(chunk("sizes", 0, content.subarray(0, MiB + 1)))),
        Code.InvalidArgument,
        /more than max_chunk_bytes \(1048576\)/,
      );
      await rejectsWithCode(
        client.uploadChunks(stream(chunk("sizes", 0, content.subarray(0, 1000)))),
        Code.InvalidArgument,
        /only the last chunk may be smaller/,
      );
      // Above the server's 4 MiB message limit: the runtime refuses the message itself.
      await rejectsWithCode(
        client.uploadChunks(stream(chunk("sizes", 0, randomBytes(5 * MiB)))),
        Code.ResourceExhausted,
      );
      const small = randomBytes(10);
      await begin(client, "small", small);
      await rejectsWithCode(
        client.uploadChunks(stream(chunk("small", 0, randomBytes(11)))),
        Code.InvalidArgument,
        /past the upload's size_bytes \(10\)/,
      );
      assert.equal((await begin(client, "sizes", content)).committedOffset, 0n);
    }));

  test("a wrong final digest fails the commit and discards the upload", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const content = randomBytes(MiB + 99);
      // Announced with no digest; the commit names a wrong one.
      await begin(client, "wrong-digest", content, { digest: "" });
      await client.uploadChunks(
        stream(
          chunk("wrong-digest", 0, content.subarray(0, MiB)),
          chunk("wrong-digest", MiB, content.subarray(MiB)),
        ),
      );
      const wrong = digestOf(randomBytes(8));
      const commit = (digest: string) =>
        client.commitUpload({
          protocolVersion: V1,
          uploadId: "wrong-digest",
          digest,
          sizeBytes: BigInt(content.length),
        });
      await rejectsWithCode(
        commit(wrong),
        Code.FailedPrecondition,
        /does not match sha256:[0-9a-f]{64}; upload "wrong-digest" is discarded/,
      );
      assert.equal(await h.artifactCount(), 0);
      assert.deepEqual(await h.blobFiles(), []);
      assert.deepEqual(await h.partialFiles(), [], "the partial content is deleted");
      await rejectsWithCode(commit(digestOf(content)), Code.NotFound, /unknown or expired/);
      // The id is free again: a new upload starts from zero.
      assert.equal(
        (await begin(client, "wrong-digest", content, { digest: "" })).committedOffset,
        0n,
      );
    }));

  test("content that differs from BeginUpload's digest is refused at commit", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const content = randomBytes(500);
      const announced = digestOf(randomBytes(500));
      await begin(client, "announced", content, { digest: announced });
      await client.uploadChunks(stream(chunk("announced", 0, content)));
      await rejectsWithCode(
        client.commitUpload({
          protocolVersion: V1,
          uploadId: "announced",
          digest: digestOf(content),
          sizeBytes: 500n,
        }),
        Code.FailedPrecondition,
        new RegExp(`does not match ${announced}`),
      );
      assert.equal(await h.artifactCount(), 0);
    }));

  test("commit is idempotent; other content for a committed upload is refused", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const content = randomBytes(300);
      await begin(client, "twice", content);
      await client.uploadChunks(stream(chunk("twice", 0, content)));
      const commit = (digest: string, size = 300n) =>
        client.commitUpload({ protocolVersion: V1, uploadId: "twice", digest, sizeBytes: size });
      await rejectsWithCode(
        commit(digestOf(content), 301n),
        Code.InvalidArgument,
        /size_bytes: 301 differs/,
      );
      const first = await commit(digestOf(content));
      const second = await commit(digestOf(content));
      assert.equal(second.artifact?.artifactId, first.artifact?.artifactId);
      await rejectsWithCode(
        commit(digestOf(randomBytes(3))),
        Code.FailedPrecondition,
        /already committed with other content/,
      );
      await rejectsWithCode(
        client.uploadChunks(stream(chunk("twice", 0, content))),
        Code.FailedPrecondition,
        /already committed/,
      );
      const resumed = await begin(client, "twice", content);
      assert.equal(resumed.committedOffset, 300n);
      assert.equal(resumed.existingArtifact?.artifactId, first.artifact?.artifactId);
      assert.equal(await h.artifactCount(), 1);
    }));

  test("BeginUpload checks its fields, the upload id's metadata and the size limit", () =>
    run(
      async (h) => {
        const client = h.clientFor(owner);
        const content = randomBytes(100);
        await begin(client, "meta", content);
        await rejectsWithCode(
          begin(client, "meta", content, { name: "other" }),
          Code.AlreadyExists,
          /upload_id "meta" was begun with other metadata \(name differ/,
        );
        // Upload ids are per caller: another caller may use the same one.
        await begin(h.clientFor(other), "meta", content, { name: "other" });
        await rejectsWithCode(begin(client, "bad id!", content), Code.InvalidArgument, /upload_id/);
        await rejectsWithCode(
          begin(client, "n", content, { name: "a/b" }),
          Code.InvalidArgument,
          /name/,
        );
        await rejectsWithCode(
          begin(client, "d", content, { digest: "md5:abc" }),
          Code.InvalidArgument,
          /digest/,
        );
        await rejectsWithCode(
          begin(client, "l", content, { leaseId: "lease-1" }),
          Code.InvalidArgument,
          /job_id: is required with a lease_id/,
        );
        await rejectsWithCode(
          begin(client, "big", randomBytes(2 * MiB + 1)),
          Code.ResourceExhausted,
          /above this server's artifact limit of 2097152 bytes/,
        );
        await rejectsWithCode(
          client.beginUpload({ uploadId: "v", name: "x", mediaType: "text/csv", sizeBytes: 1n }),
          Code.InvalidArgument,
          /protocol_version is required/,
        );
        await rejectsWithCode(
          client.beginUpload({
            protocolVersion: { major: 2, minor: 0, patch: 0 },
            uploadId: "v",
            name: "x",
            mediaType: "text/csv",
            sizeBytes: 1n,
          }),
          Code.FailedPrecondition,
          /2\.0\.0 is not compatible with this server's 1\.0\.0/,
        );
      },
      { store: { maxArtifactBytes: 2 * MiB } },
    ));

  test("the upload hook decides who uploads for a job, at begin and at commit", () => {
    let leaseValid = true;
    return run(
      async (h) => {
        const client = h.clientFor(owner);
        const content = randomBytes(64);
        await rejectsWithCode(
          begin(client, "node-upload", content, { jobId: "job-9", leaseId: "lease-x" }),
          Code.PermissionDenied,
          /does not hold lease lease-x/,
        );
        await begin(client, "node-upload", content, { jobId: "job-9", leaseId: "lease-1" });
        await client.uploadChunks(stream(chunk("node-upload", 0, content)));
        leaseValid = false;
        await rejectsWithCode(
          client.commitUpload({
            protocolVersion: V1,
            uploadId: "node-upload",
            digest: digestOf(content),
            sizeBytes: 64n,
          }),
          Code.FailedPrecondition,
          /lease lease-1 has ended/,
        );
        leaseValid = true;
        const { artifact } = await client.commitUpload({
          protocolVersion: V1,
          uploadId: "node-upload",
          digest: digestOf(content),
          sizeBytes: 64n,
        });
        assert.equal(artifact?.jobId, "job-9");
      },
      {
        canUpload: (caller, target) => {
          if (target.leaseId === "") return;
          if (caller !== owner.address || target.leaseId !== "lease-1") {
            throw new ConnectError(
              `${caller} does not hold lease ${target.leaseId}`,
              Code.PermissionDenied,
            );
          }
          if (!leaseValid) {
            throw new ConnectError(`lease ${target.leaseId} has ended`, Code.FailedPrecondition);
          }
        },
      },
    );
  });

  test("reading another's artifact is permission_denied unless the read hook allows it", () => {
    const validator = generateKeyPair();
    const seen: string[] = [];
    return run(
      async (h) => {
        const content = randomBytes(2000);
        const artifact = await uploadArtifact(
          h.clientFor(owner),
          { bytes: content },
          { name: "predictions", mediaType: "application/x-ndjson", jobId: "job-7" },
        );
        const id = artifact.artifactId;
        const dest = scratchFile(`denied`);
        await rejectsWithCode(
          downloadArtifact(h.clientFor(other), id, dest),
          Code.PermissionDenied,
          /may not read artifact/,
        );
        await rejectsWithCode(
          h.clientFor(other).getArtifact({ protocolVersion: V1, artifactId: id }),
          Code.PermissionDenied,
        );
        const raw = h.clientFor(other).downloadArtifact({ protocolVersion: V1, artifactId: id });
        await rejectsWithCode(
          (async () => {
            for await (const _ of raw) assert.fail("no bytes for a denied reader");
          })(),
          Code.PermissionDenied,
        );
        await assert.rejects(stat(dest), { code: "ENOENT" });
        await assert.rejects(stat(`${dest}.partial`), { code: "ENOENT" });

        await downloadArtifact(h.clientFor(validator), id, dest);
        assert.deepEqual(await readFile(dest), content);
        assert.ok(seen.every((entry) => entry === `job-7 ${id}`));
        assert.ok(seen.length > 0, "the hook was asked with the artifact");

        await rejectsWithCode(
          h.clientFor(owner).getArtifact({ protocolVersion: V1, artifactId: "art_missing" }),
          Code.NotFound,
          /artifact "art_missing" does not exist/,
        );
      },
      {
        canRead: (caller, artifact) => {
          seen.push(`${artifact.jobId} ${artifact.artifactId}`);
          return caller === validator.address;
        },
      },
    );
  });

  test("DownloadArtifact streams a range: the record first, each chunk with its SHA-256", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const content = randomBytes(3 * MiB + 7);
      const artifact = await uploadArtifact(
        client,
        { bytes: content },
        { name: "blob", mediaType: "application/octet-stream" },
      );
      const messages = [];
      for await (const message of client.downloadArtifact({
        protocolVersion: V1,
        artifactId: artifact.artifactId,
        offset: BigInt(MiB - 3),
        length: BigInt(MiB + 10),
      })) {
        messages.push(message);
      }
      assert.equal(messages.length, 2);
      assert.equal(messages[0]?.artifact?.artifactId, artifact.artifactId);
      assert.equal(messages[1]?.artifact, undefined, "the record only on the first chunk");
      assert.deepEqual(
        messages.map((m) => [m.offset, m.data.length]),
        [
          [BigInt(MiB - 3), MiB],
          [BigInt(2 * MiB - 3), 10],
        ],
      );
      for (const message of messages) {
        assert.equal(sha256Hex(message.data), Buffer.from(message.sha256).toString("hex"));
        const start = Number(message.offset);
        assert.deepEqual(
          Buffer.from(message.data),
          content.subarray(start, start + message.data.length),
        );
      }
      const atEnd = [];
      for await (const message of client.downloadArtifact({
        protocolVersion: V1,
        artifactId: artifact.artifactId,
        offset: BigInt(content.length),
      })) {
        atEnd.push(message);
      }
      assert.equal(atEnd.length, 1, "the record even with nothing left to send");
      assert.equal(atEnd[0]?.data.length, 0);
      await rejectsWithCode(
        (async () => {
          for await (const _ of client.downloadArtifact({
            protocolVersion: V1,
            artifactId: artifact.artifactId,
            offset: BigInt(content.length + 1),
          })) {
            assert.fail("nothing past the end");
          }
        })(),
        Code.InvalidArgument,
        /offset: 3145736 is past the artifact's size \(3145735 bytes\)/,
      );
    }));

  test("a download resumes its partial file", () =>
    run(async (h) => {
      const client = h.clientFor(owner);
      const content = randomBytes(4 * MiB + 1);
      const artifact = await uploadArtifact(
        client,
        { bytes: content },
        { name: "dataset", mediaType: "application/octet-stream" },
      );
      const dest = scratchFile(`partial`);
      const controller = new AbortController();
      await rejectsWithCode(
        downloadArtifact(client, artifact.artifactId, dest, {
          signal: controller.signal,
          onProgress: (received) => {
            if (received >= 2 * MiB) controller.abort();
          },
        }),
        Code.Canceled,
      );
      const kept = (await stat(`${dest}.partial`)).size;
      assert.ok(kept >= 2 * MiB && kept < content.length, `kept ${kept}`);
      const progress: number[] = [];
      await downloadArtifact(client, artifact.artifactId, dest, {
        onProgress: (received) => progress.push(received),
      });
      assert.equal(progress[0], kept, "started from the partial file's length");
      assert.deepEqual(await readFile(dest), content);
    }));

  test("unsigned calls are refused", () =>
    run(async (h) => {
      const unsigned = createClient(
        ArtifactService,
        createConnectTransport({ baseUrl: h.url, httpVersion: "1.1" }),
      );
      await rejectsWithCode(
        unsigned.getArtifact({ protocolVersion: V1, artifactId: "art_x" }),
        Code.Unauthenticated,
      );
    }));
});

await describeEachStore("ArtifactService with a 100 MB file", (backend: StoreBackend) => {
  const scratch = suiteScratch();
  test("100 MB uploads and downloads in 1 MiB chunks under the default 4 MiB message limit", () =>
    withArtifactServer(backend, { space: "big" }, async (h) => {
      const owner = generateKeyPair();
      const client = h.clientFor(owner);
      const source = join(scratch(), "big.bin");
      const size = 100 * 1000 * 1000;
      const digest = await writeRandomFile(source, size);
      let reports = 0;
      const artifact = await uploadArtifact(
        client,
        { path: source },
        { name: "model", mediaType: "application/onnx" },
        { onProgress: () => (reports += 1) },
      );
      assert.equal(artifact.content?.digest, digest);
      assert.equal(artifact.content?.sizeBytes, BigInt(size));
      assert.ok(reports >= Math.ceil(size / MiB), `progress per chunk (${reports})`);
      await rm(source);

      const dest = join(scratch(), "big.out");
      await downloadArtifact(client, artifact.artifactId, dest);
      assert.equal((await stat(dest)).size, size);
      assert.equal(await digestOfFile(dest), digest);
      await rm(dest);
    }));
});
