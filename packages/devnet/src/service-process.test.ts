import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, test } from "node:test";
import { spawnServiceProcess } from "./service-process.js";

const dir = mkdtempSync(join(tmpdir(), "tessera-service-process-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function script(name: string, source: string): string {
  const file = join(dir, name);
  writeFileSync(file, source);
  return file;
}

function collect(stream: PassThrough): () => string {
  let text = "";
  stream.on("data", (chunk: Buffer) => {
    text += chunk.toString("utf8");
  });
  return () => text;
}

test("output lines are shown prefixed and appended plain to the log file", async () => {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const shown = collect(stdout);
  const shownErrors = collect(stderr);
  const logFile = join(dir, "talker.log");
  const child = spawnServiceProcess({
    name: "talker",
    entry: script(
      "talker.mjs",
      `process.stdout.write("one\\n\\u001b[32mtw");
       setTimeout(() => { process.stdout.write("o\\u001b[39m\\n"); console.error("oops"); }, 50);`,
    ),
    cwd: dir,
    env: {},
    stdout,
    stderr,
    prefix: (line) => `talker | ${line}`,
    logFile,
  });

  assert.deepEqual(await child.exited, { code: 0, signal: null });
  assert.equal(shown(), "talker | one\ntalker | \u001b[32mtwo\u001b[39m\n");
  assert.equal(shownErrors(), "talker | oops\n");
  assert.equal(readFileSync(logFile, "utf8"), "one\ntwo\noops\n");
});

test("a service that ignores SIGTERM is killed once its grace period is over", async () => {
  const stubborn = script(
    "stubborn.mjs",
    `process.on("SIGTERM", () => {}); console.log("up"); setInterval(() => {}, 1000);`,
  );
  const stdout = new PassThrough();
  const shown = collect(stdout);
  const child = spawnServiceProcess({
    name: "stubborn",
    entry: stubborn,
    cwd: dir,
    env: {},
    stdout,
    stderr: new PassThrough(),
    prefix: (line) => line,
    logFile: join(dir, "stubborn.log"),
  });
  while (!shown().includes("up")) await new Promise((resolve) => setTimeout(resolve, 10));

  const status = await child.stop(200);

  assert.deepEqual(status, { code: null, signal: "SIGKILL", forced: true });
  assert.deepEqual(await child.stop(200), status, "a second stop() reports the same end");
});
