import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createKeyFile, writeKeyFile } from "@tessera/identity/key-file";
import { generateKeyPair } from "@tessera/identity/keys";
import { JobState, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  DEFAULT_JOB_SERVER_URL,
  parseArtifactId,
  parseJobId,
  parsePageSize,
  parseStateFilter,
  parseTypeFilter,
  resolveJobServerAddress,
  resolveJobServerUrl,
  resolveKeyName,
} from "./job-options.js";

describe("resolveJobServerUrl and resolveKeyName", () => {
  it("prefer the option, then the environment, then the devnet's job server", () => {
    const env = { TESSERA_JOB_SERVER_URL: "http://jobs:8080", TESSERA_KEY: "bob" };
    assert.equal(resolveJobServerUrl("http://a:1", env), "http://a:1");
    assert.equal(resolveJobServerUrl(undefined, env), "http://jobs:8080");
    assert.equal(resolveJobServerUrl(undefined, {}), DEFAULT_JOB_SERVER_URL);
    assert.equal(DEFAULT_JOB_SERVER_URL, "http://127.0.0.1:7001");
    assert.equal(resolveKeyName("alice", env), "alice");
    assert.equal(resolveKeyName(undefined, env), "bob");
    assert.throws(() => resolveKeyName(undefined, {}), {
      name: "CliError",
      message:
        'no key to sign with: pass --key <name> or set TESSERA_KEY (create one with "tessera keys new <name>")',
    });
  });
});

describe("resolveJobServerAddress", () => {
  let dir: string;
  const jobServerKey = generateKeyPair();
  const other = generateKeyPair();
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-job-server-address-"));
    await mkdir(join(dir, "data", "job-server"), { recursive: true });
    await writeKeyFile(
      join(dir, "data", "job-server", "key.json"),
      await createKeyFile("job-server", jobServerKey),
    );
    await mkdir(join(dir, "repo", ".tessera-data", "job-server"), { recursive: true });
    await writeKeyFile(
      join(dir, "repo", ".tessera-data", "job-server", "key.json"),
      await createKeyFile("job-server", other),
    );
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("prefers --job-server-address, then TESSERA_JOB_SERVER_ADDRESS, then the devnet's key file", async () => {
    const env = { TESSERA_JOB_SERVER_ADDRESS: other.address, TESSERA_DATA_DIR: join(dir, "data") };
    const repoRoot = join(dir, "repo");
    assert.equal(
      await resolveJobServerAddress({ option: jobServerKey.address, env, repoRoot }),
      jobServerKey.address,
    );
    assert.equal(await resolveJobServerAddress({ env, repoRoot }), other.address);
    assert.equal(
      await resolveJobServerAddress({ env: { TESSERA_DATA_DIR: join(dir, "data") }, repoRoot }),
      jobServerKey.address,
    );
    assert.equal(await resolveJobServerAddress({ env: {}, repoRoot }), other.address);
  });

  it("says how to give the address, naming the job server's flag and variable", async () => {
    await assert.rejects(resolveJobServerAddress({ env: {}, repoRoot: join(dir, "nowhere") }), {
      name: "CliError",
      message:
        "the job server's address is unknown: pass --job-server-address or set TESSERA_JOB_SERVER_ADDRESS (or TESSERA_DATA_DIR to a devnet's data directory)",
    });
    await assert.rejects(
      resolveJobServerAddress({ env: { TESSERA_DATA_DIR: join(dir, "empty") }, repoRoot: dir }),
      {
        message: `the job server's address is unknown: no key file at ${join(dir, "empty", "job-server", "key.json")}; pass --job-server-address or set TESSERA_JOB_SERVER_ADDRESS`,
      },
    );
    await assert.rejects(resolveJobServerAddress({ option: "tsr1nope", env: {} }), {
      message: /^--job-server-address is not a valid address/,
    });
  });
});

describe("job and artifact arguments", () => {
  it("reads state and type filters by name, listing the names when one is unknown", () => {
    assert.equal(parseStateFilter("completed"), JobState.COMPLETED);
    assert.equal(parseStateFilter("RUNNING"), JobState.RUNNING);
    assert.equal(parseTypeFilter("inference"), JobType.INFERENCE);
    assert.throws(() => parseStateFilter("done"), {
      message:
        'unknown --state "done": use pending, queued, assigned, running, validating, completed, failed, cancelled',
    });
    assert.throws(() => parseTypeFilter("finetune"), {
      message: 'unknown --type "finetune": use training, inference, evaluation, preprocessing',
    });
  });

  it("takes page sizes 1 to 100 and well-formed job ids only", () => {
    assert.equal(parsePageSize("100"), 100);
    for (const bad of ["0", "101", "ten", "-1"]) {
      assert.throws(() => parsePageSize(bad), /^CliError: --page-size must be/);
    }
    assert.equal(parseJobId("example-train-classifier"), "example-train-classifier");
    assert.throws(() => parseJobId("a job"), /^CliError: the job id must be 1 to 128 of/);
  });

  it("takes an artifact id bare or as artifact://<id>", () => {
    assert.equal(parseArtifactId("artifact://abc"), "abc");
    assert.equal(parseArtifactId("abc"), "abc");
    assert.throws(() => parseArtifactId("https://example.com/x"), {
      message:
        'not an artifact: "https://example.com/x"; give its id or artifact://<id> (as a job\'s result lists it)',
    });
  });
});
