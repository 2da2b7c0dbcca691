import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import { DataDirInUseError, lockDataDir } from "./data-dir-lock.js";

let dataDir = "";
beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), "tessera-lock-test-"));
});
afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

test("a second network on the same data directory is refused while the first runs", () => {
  // This test process plays the first network's launcher.
  writeFileSync(join(dataDir, "devnet.pid"), `${process.pid}\n`);
  assert.throws(
    () => lockDataDir(dataDir, process.pid + 1),
    (error: unknown) => {
      assert.ok(error instanceof DataDirInUseError);
      assert.equal(error.pid, process.pid);
      assert.match(error.message, /TESSERA_DATA_DIR/);
      return true;
    },
  );
});

test("a lock left by a launcher that is gone is taken over, and released on stop", () => {
  const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]);
  writeFileSync(join(dataDir, "devnet.pid"), `${gone.stdout.toString()}\n`);
  const lock = lockDataDir(dataDir);
  assert.ok(existsSync(join(dataDir, "devnet.pid")));
  lock.release();
  lock.release();
  assert.equal(existsSync(join(dataDir, "devnet.pid")), false);
});
