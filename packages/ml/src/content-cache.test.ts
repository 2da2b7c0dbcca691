import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { pathToFileURL } from "node:url";
import { createContentCache } from "./content-cache.js";
import { ContentUnavailableError, JobInputError } from "./errors.js";

const content = Buffer.from("f0,label\n1,0\n2,1\n");
const digest = `sha256:${createHash("sha256").update(content).digest("hex")}`;
const otherDigest = `sha256:${"ab".repeat(32)}`;

let dir: string;
let server: Server;
let baseUrl: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-ml-cache-"));
  await writeFile(join(dir, "source.csv"), content);
  server = createServer((request, response) => {
    if (request.url === "/data.csv") response.end(content);
    else if (request.url === "/big") response.end(Buffer.alloc(4096, 1));
    else {
      response.statusCode = 404;
      response.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

const signal = () => new AbortController().signal;

test("file:// content is verified and copied under its digest", async () => {
  const cache = createContentCache({ dir: join(dir, "c1") });
  const ref = {
    digest,
    sizeBytes: BigInt(content.length),
    uri: pathToFileURL(join(dir, "source.csv")).href,
  };
  const path = await cache.resolve(ref, signal());
  assert.equal(path, cache.pathOf(digest));
  assert.deepEqual(await readFile(path), content);
  // Cached now: resolving without a uri works.
  assert.equal(await cache.resolve({ digest, sizeBytes: 0n, uri: "" }, signal()), path);
});

test("wrong bytes are refused and nothing is left behind", async () => {
  const cache = createContentCache({ dir: join(dir, "c2") });
  const ref = {
    digest: otherDigest,
    sizeBytes: BigInt(content.length),
    uri: pathToFileURL(join(dir, "source.csv")).href,
  };
  await assert.rejects(
    cache.resolve(ref, signal()),
    (error: unknown) => error instanceof JobInputError && /do not match digest/.test(error.message),
  );
  assert.deepEqual(await readdir(join(dir, "c2", "sha256")), []);
  assert.deepEqual(await readdir(join(dir, "c2", "tmp")), []);
  await assert.rejects(
    cache.resolve(
      { digest, sizeBytes: 5n, uri: pathToFileURL(join(dir, "source.csv")).href },
      signal(),
    ),
    new RegExp(`has ${content.length} bytes, its ref says 5`),
  );
  await assert.rejects(
    cache.resolve({ digest: "md5:abc", sizeBytes: 0n, uri: "" }, signal()),
    /sha256:<64 lowercase hex>/,
  );
  await assert.rejects(
    cache.resolve({ digest, sizeBytes: 0n, uri: "" }, signal()),
    /not cached and has no uri/,
  );
  await assert.rejects(
    cache.resolve({ digest, sizeBytes: 0n, uri: "ftp://host/x" }, signal()),
    /scheme .* is not supported/,
  );
  await assert.rejects(
    cache.resolve(
      { digest, sizeBytes: 0n, uri: pathToFileURL(join(dir, "missing.csv")).href },
      signal(),
    ),
    /not on this node/,
  );
});

test("http(s) content is fetched within its declared size", async () => {
  const cache = createContentCache({ dir: join(dir, "c3") });
  const path = await cache.resolve(
    { digest, sizeBytes: BigInt(content.length), uri: `${baseUrl}/data.csv` },
    signal(),
  );
  assert.deepEqual(await readFile(path), content);
  await assert.rejects(
    cache.resolve({ digest: otherDigest, sizeBytes: 100n, uri: `${baseUrl}/big` }, signal()),
    /larger than its declared 100 bytes/,
  );
  await assert.rejects(
    cache.resolve({ digest: otherDigest, sizeBytes: 0n, uri: `${baseUrl}/missing` }, signal()),
    (error: unknown) => error instanceof ContentUnavailableError && /HTTP 404/.test(error.message),
  );
});

test("artifact:// content comes from the fetcher; concurrent resolves download once", async () => {
  let calls = 0;
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const cache = createContentCache({
    dir: join(dir, "c4"),
    fetchArtifact: async (ref, destPath) => {
      calls++;
      assert.equal(ref.uri, "artifact://a-1");
      await gate;
      await copyFile(join(dir, "source.csv"), destPath);
    },
  });
  const ref = { digest, sizeBytes: BigInt(content.length), uri: "artifact://a-1" };
  const all = Promise.all([
    cache.resolve(ref, signal()),
    cache.resolve(ref, signal()),
    cache.resolve(ref, signal()),
  ]);
  release();
  const paths = await all;
  assert.equal(calls, 1);
  assert.equal(new Set(paths).size, 1);
  await cache.resolve(ref, signal());
  assert.equal(calls, 1);
  const noFetcher = createContentCache({ dir: join(dir, "c5") });
  await assert.rejects(noFetcher.resolve(ref, signal()), ContentUnavailableError);
});

test("a caller's abort leaves the shared download to the others", async () => {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let sawAbort = false;
  let started: () => void = () => {};
  const fetching = new Promise<void>((resolve) => {
    started = resolve;
  });
  const cache = createContentCache({
    dir: join(dir, "c6"),
    fetchArtifact: async (_ref, destPath, fetchSignal) => {
      started();
      await gate;
      sawAbort = fetchSignal.aborted;
      await copyFile(join(dir, "source.csv"), destPath);
    },
  });
  const ref = { digest, sizeBytes: 0n, uri: "artifact://a-2" };
  const quitter = new AbortController();
  const first = cache.resolve(ref, quitter.signal);
  const second = cache.resolve(ref, signal());
  await fetching;
  quitter.abort(new Error("caller went away"));
  await assert.rejects(first, /caller went away/);
  release();
  assert.deepEqual(await readFile(await second), content);
  assert.equal(sawAbort, false);
});

test("when every caller aborts, the download is aborted too", async () => {
  let sawAbort: boolean | undefined;
  let started: () => void = () => {};
  const fetching = new Promise<void>((resolve) => {
    started = resolve;
  });
  const cache = createContentCache({
    dir: join(dir, "c7"),
    fetchArtifact: async (_ref, _destPath, fetchSignal) => {
      started();
      await new Promise((resolve) =>
        fetchSignal.addEventListener("abort", resolve, { once: true }),
      );
      sawAbort = fetchSignal.aborted;
      throw fetchSignal.reason;
    },
  });
  const quitter = new AbortController();
  const only = cache.resolve({ digest, sizeBytes: 0n, uri: "artifact://a-3" }, quitter.signal);
  await fetching;
  quitter.abort(new Error("cancelled"));
  await assert.rejects(only, /cancelled/);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(sawAbort, true);
  assert.deepEqual(await readdir(join(dir, "c7", "tmp")), []);
});
