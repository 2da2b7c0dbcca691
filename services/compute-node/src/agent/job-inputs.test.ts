import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import { create } from "@bufbuild/protobuf";
import { createContentCache } from "@tessera/ml/content-cache";
import { JobInputError } from "@tessera/ml/errors";
import { type ContentRef, ContentRefSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { AssignmentSchema, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { resolveJobInputs, restrictLocalFiles } from "./job-inputs.js";

let dir: string;
let shared: string;
let secret: string;

function refOf(path: string, text: string, mediaType = "text/csv"): ContentRef {
  return create(ContentRefSchema, {
    digest: `sha256:${createHash("sha256").update(text).digest("hex")}`,
    sizeBytes: BigInt(Buffer.byteLength(text)),
    uri: pathToFileURL(path).href,
    mediaType,
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-inputs-"));
  shared = join(dir, "shared");
  secret = join(dir, "secret");
  await mkdir(shared);
  await mkdir(secret);
  await writeFile(join(shared, "train.csv"), "x,label\n1,0\n");
  await writeFile(join(shared, "model.json"), "{}");
  await writeFile(join(secret, "key.json"), "private");
  await symlink(join(secret, "key.json"), join(shared, "escape.json"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("job inputs", () => {
  test("model, dataset and weights resolve to verified local copies", async () => {
    const cache = restrictLocalFiles(createContentCache({ dir: join(dir, "cache") }), [shared]);
    const dataset = refOf(join(shared, "train.csv"), "x,label\n1,0\n");
    const model = refOf(
      join(shared, "model.json"),
      "{}",
      "application/vnd.tessera.sequential+json",
    );
    const input = await resolveJobInputs(
      create(AssignmentSchema, {
        jobId: "j",
        leaseId: "l",
        spec: { jobId: "j", jobType: JobType.TRAINING, dataset, model: { content: model } },
      }),
      cache,
      new AbortController().signal,
    );
    assert.equal(input.datasetMediaType, "text/csv");
    assert.equal(input.modelMediaType, "application/vnd.tessera.sequential+json");
    assert.equal(input.initialWeightsPath, undefined);
    assert.ok(input.datasetPath?.startsWith(join(dir, "cache")));
    assert.ok(input.modelPath?.startsWith(join(dir, "cache")));
  });

  test("a lease's own dataset shard wins over the spec's", async () => {
    const seen: string[] = [];
    const resolver = {
      resolve: async (ref: ContentRef) => {
        seen.push(ref.uri);
        return `/cache/${ref.uri}`;
      },
    };
    const spec = { jobId: "j", dataset: { digest: "sha256:aa", uri: "artifact://spec" } };
    const shard = { digest: "sha256:bb", uri: "artifact://shard" };
    const input = await resolveJobInputs(
      create(AssignmentSchema, { jobId: "j", spec, dataset: shard }),
      resolver,
      new AbortController().signal,
    );
    assert.deepEqual(seen, ["artifact://shard"]);
    assert.equal(input.datasetPath, "/cache/artifact://shard");
  });

  test("file:// content outside the shared directories is refused as invalid input", async () => {
    const cache = restrictLocalFiles(createContentCache({ dir: join(dir, "cache2") }), [shared]);
    const signal = new AbortController().signal;
    await assert.rejects(
      cache.resolve(refOf(join(secret, "key.json"), "private"), signal),
      (error: unknown) =>
        error instanceof JobInputError && /shares no local data/.test(error.message),
    );
    // A symbolic link inside the shared directory that points out of it is refused too.
    await assert.rejects(
      cache.resolve(refOf(join(shared, "escape.json"), "private"), signal),
      JobInputError,
    );
    const none = restrictLocalFiles(createContentCache({ dir: join(dir, "cache3") }), []);
    await assert.rejects(
      none.resolve(refOf(join(shared, "train.csv"), "x,label\n1,0\n"), signal),
      JobInputError,
    );
  });
});
