import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createKeystore } from "@tessera/identity/keystore";

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(packageDir, "bin", "tessera.js");
const ADDRESS = /^tsr1[02-9ac-hj-np-z]{58}$/;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built CLI as a child process. */
function tessera(home: string, args: string[], input?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { PATH: process.env.PATH, HOME: home, TESSERA_HOME: home },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => {
      stdout += text;
    });
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
      stderr += text;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? "");
  });
}

function field(stdout: string, name: string): string | undefined {
  return stdout.match(new RegExp(`^${name}: (.*)$`, "m"))?.[1];
}

describe("tessera keys (built CLI)", () => {
  let home: string;
  before(async () => {
    if (!existsSync(join(packageDir, "dist", "main.js"))) {
      throw new Error("dist/main.js is missing: run `pnpm --filter @tessera/cli build` first");
    }
    home = await mkdtemp(join(tmpdir(), "tessera-cli-"));
  });
  after(async () => {
    await rm(home, { recursive: true, force: true });
  });

  it("new -> list -> show print the same address", async () => {
    const created = await tessera(home, ["keys", "new", "demo", "--no-password"]);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(field(created.stdout, "name"), "demo");
    const address = field(created.stdout, "address");
    assert.match(address ?? "", ADDRESS);

    const listed = await tessera(home, ["keys", "list"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`^demo\\s+${address}\\s+plain$`, "m"));

    const shown = await tessera(home, ["keys", "show", "demo"]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(shown.stdout, `${address}\n`);
  });

  it("with --password-stdin the key file is 0600 and holds no plain secret", async () => {
    const created = await tessera(
      home,
      ["keys", "new", "locked", "--password-stdin"],
      "s3cret pass\n",
    );
    assert.equal(created.code, 0, created.stderr);
    const path = field(created.stdout, "file") ?? "";
    assert.equal(path, join(home, "keys", "locked.json"));
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const file = JSON.parse(await readFile(path, "utf8"));
    assert.equal(file.secret.kind, "encrypted");
    assert.equal(file.secret.secretKey, undefined);

    // The trailing newline is not part of the password; the secret is the one the address names.
    const keystore = createKeystore({ homeDir: home });
    const keyPair = await keystore.load("locked", "s3cret pass");
    assert.equal(keyPair.address, field(created.stdout, "address"));
    const text = await readFile(path, "utf8");
    assert.ok(!text.includes(Buffer.from(keyPair.exportSecretKey()).toString("hex")));
    assert.ok(!created.stdout.includes(Buffer.from(keyPair.exportSecretKey()).toString("hex")));
  });

  it("a plain key file is 0600 too", async () => {
    await tessera(home, ["keys", "new", "plainkey", "--no-password"]);
    assert.equal((await stat(join(home, "keys", "plainkey.json"))).mode & 0o777, 0o600);
  });

  it("a duplicate name exits 1 with one clear line and keeps the first key", async () => {
    const first = await tessera(home, ["keys", "new", "twice", "--no-password"]);
    const second = await tessera(home, ["keys", "new", "twice", "--no-password"]);
    assert.equal(second.code, 1);
    assert.equal(second.stdout, "");
    assert.equal(second.stderr, 'tessera: error: a key named "twice" already exists\n');
    const shown = await tessera(home, ["keys", "show", "twice"]);
    assert.equal(shown.stdout.trim(), field(first.stdout, "address"));
  });

  it("an unknown name exits 1", async () => {
    const shown = await tessera(home, ["keys", "show", "ghost"]);
    assert.equal(shown.code, 1);
    assert.equal(shown.stderr, 'tessera: error: no key named "ghost"\n');
  });

  it("refuses to guess a password: no TTY and no option exits 1", async () => {
    const run = await tessera(home, ["keys", "new", "nopw"]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^tessera: error: stdin is not a terminal: pass --password-stdin/);
    assert.equal((await tessera(home, ["keys", "show", "nopw"])).code, 1);
  });

  it("refuses an empty password on stdin, a bad name, and both password options", async () => {
    const empty = await tessera(home, ["keys", "new", "empty", "--password-stdin"], "\n");
    assert.equal(empty.code, 1);
    assert.equal(empty.stderr, "tessera: error: the password on stdin is empty\n");
    const badName = await tessera(home, ["keys", "new", "Bad Name", "--no-password"]);
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /^tessera: error: invalid key name "Bad Name"/);
    const both = await tessera(home, ["keys", "new", "x", "--no-password", "--password-stdin"]);
    assert.equal(both.code, 1);
    assert.equal(both.stderr.split("\n").length, 2, "one line");
  });

  it("usage errors exit 1 with one line; help exits 0", async () => {
    const unknown = await tessera(home, ["keys", "frobnicate"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^tessera: error: unknown command 'frobnicate'/);
    const missing = await tessera(home, ["keys", "show"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /missing required argument 'name'/);
    const help = await tessera(home, ["keys", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /new \[options\] <name>/);
  });

  const hasScript = spawnSync("script", ["--version"]).status === 0;
  it("prompts for the password without echo on a terminal", {
    skip: !hasScript && "no `script` to make a pseudo-terminal",
  }, async () => {
    // util-linux `script` runs the CLI on a pseudo-terminal; type only after the prompt shows.
    const child = spawn(
      "script",
      [
        "-qec",
        `${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} keys new typed`,
        "/dev/null",
      ],
      {
        env: { PATH: process.env.PATH, HOME: home, TESSERA_HOME: home },
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    let output = "";
    let typed = false;
    child.stdout.setEncoding("utf8").on("data", (text: string) => {
      output += text;
      if (!typed && output.includes('Password to encrypt key "typed": ')) {
        typed = true;
        child.stdin.write("tty pass\rtty pass\r");
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, output);
    assert.ok(!output.includes("tty pass"), `the password was echoed: ${JSON.stringify(output)}`);
    const address = field(output.replace(/\r/g, ""), "address");
    const keyPair = await createKeystore({ homeDir: home }).load("typed", "tty pass");
    assert.equal(keyPair.address, address);
  });
});
