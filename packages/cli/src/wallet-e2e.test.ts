// `tessera wallet ...` end to end: the CLI against the REAL wallet process (services/wallet's
// dist/main.js, its ledger on SQLite in a temporary DATA_DIR, every state change signed), started
// the way a user starts it. Skipped, with the reason, until services/wallet is built.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { createKeystore } from "@tessera/identity/keystore";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { loggedAddress, type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";
import { withServiceClient } from "./clients.js";
import { CLI_PROTOCOL_VERSION } from "./protocol-version.js";
import { runInProcess } from "./test-cli-context.js";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const walletEntry = join(repoRoot, "services", "wallet", "dist", "main.js");
const skip = existsSync(walletEntry)
  ? false
  : "the wallet is not built: services/wallet/dist/main.js is missing (build @tessera/wallet)";

/** 2^64 - 1: the most the wallet holds in one amount; far beyond what a JS number keeps exact. */
const MAX_AMOUNT = "18446744073709551615";

describe("tessera wallet against the real wallet process", () => {
  let dir: string;
  let wallet: SpawnedService;
  let walletAddress: string;
  let env: Record<string, string>;
  let alice: KeyPair;
  let bob: KeyPair;

  before(async () => {
    if (skip) return;
    dir = await mkdtemp(join(tmpdir(), "tessera-cli-wallet-e2e-"));
    const keystore = createKeystore({ homeDir: dir, scryptCost: { N: 2 ** 4, r: 8, p: 1 } });
    alice = (await keystore.create("alice")).keyPair;
    bob = (await keystore.create("bob", { password: "bob's pass" })).keyPair;
    await keystore.create("nobody");
    wallet = await spawnService({
      entry: walletEntry,
      env: {
        DATA_DIR: join(dir, "wallet"),
        GENESIS: `${alice.address}=${MAX_AMOUNT}`,
        FAUCET_ENABLED: "true",
      },
    });
    walletAddress = loggedAddress(wallet);
    env = {
      TESSERA_HOME: dir,
      TESSERA_WALLET_URL: wallet.url,
      TESSERA_WALLET_ADDRESS: walletAddress,
    };
  });

  after(async () => {
    await wallet?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const tessera = (args: string[], input?: string) => runInProcess(args, env, input);
  const field = (stdout: string, name: string) =>
    stdout.match(new RegExp(`^${name}: (.*)$`, "m"))?.[1];
  const balanceOf = async (key: string, input?: string) => {
    const args = ["wallet", "balance", "--key", key];
    const run = await tessera(input ? [...args, "--password-stdin"] : args, input);
    assert.equal(run.code, 0, run.stderr);
    return { available: field(run.stdout, "available"), held: field(run.stdout, "held") };
  };

  it("balance shows the genesis money exactly, available and held", { skip }, async () => {
    const run = await tessera(["wallet", "balance", "--key", "alice"]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(
      run.stdout,
      `address: ${alice.address}\navailable: ${MAX_AMOUNT}\nheld: 0\nstaked: 0\ntotal: ${MAX_AMOUNT}\n`,
    );
    const json = await tessera(["wallet", "balance", "--key", "alice", "--json"]);
    assert.equal(json.code, 0, json.stderr);
    assert.equal(JSON.parse(json.stdout).available, MAX_AMOUNT);
  });

  it("transfer moves the money once, prints its id, and a retry with that id pays nothing more", {
    skip,
  }, async () => {
    const args = ["wallet", "transfer", "--key", "alice", "--to", bob.address, "--amount", "1500"];
    const first = await tessera([...args, "--memo", "thanks"]);
    assert.equal(first.code, 0, first.stderr);
    const id = field(first.stdout, "transfer id") ?? "";
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.equal(field(first.stdout, "from"), alice.address);
    assert.equal(field(first.stdout, "to"), bob.address);
    assert.equal(field(first.stdout, "amount"), "1500");
    assert.equal(field(first.stdout, "memo"), "thanks");

    const retry = await tessera([...args, "--memo", "thanks", "--id", id]);
    assert.equal(retry.code, 0, retry.stderr);
    assert.equal(retry.stdout, first.stdout, "the retry returns the original transfer");

    assert.deepEqual(await balanceOf("bob", "bob's pass\n"), { available: "1500", held: "0" });
    assert.equal((await balanceOf("alice")).available, (BigInt(MAX_AMOUNT) - 1500n).toString());

    const reused = await tessera([...args.slice(0, -1), "1501", "--id", id]);
    assert.equal(reused.code, 1);
    assert.match(reused.stderr, /^tessera: error: already_exists: [^\n]+\n$/);
    assert.equal((await balanceOf("bob", "bob's pass\n")).available, "1500");
  });

  it("the wallet's refusals print as one line with their code and exit 1", { skip }, async () => {
    const cases: Array<[string[], string, RegExp]> = [
      [
        ["--key", "bob", "--password-stdin", "--to", alice.address, "--amount", "1501"],
        "bob's pass\n",
        /^tessera: error: failed_precondition: [^\n]+\n$/,
      ],
      [
        ["--key", "alice", "--to", alice.address, "--amount", "1"],
        "",
        /^tessera: error: invalid_argument: [^\n]+\n$/,
      ],
      [
        ["--key", "alice", "--to", bob.address, "--amount", "18446744073709551616"],
        "",
        /^tessera: error: invalid_argument: [^\n]+\n$/,
      ],
    ];
    const before = await balanceOf("alice");
    for (const [args, input, expected] of cases) {
      const run = await tessera(["wallet", "transfer", ...args], input);
      assert.equal(run.code, 1, args.join(" "));
      assert.equal(run.stdout, "");
      assert.match(run.stderr, expected);
    }
    assert.deepEqual(await balanceOf("alice"), before, "no refusal moved any money");
  });

  it("reads are the owner's: another key is refused, an unsigned read is told to sign", {
    skip,
  }, async () => {
    const other = await tessera(["wallet", "balance", alice.address, "--key", "nobody"]);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /^tessera: error: permission_denied: [^\n]+\n$/);
    const unsigned = await tessera(["wallet", "balance", alice.address]);
    assert.equal(unsigned.code, 1);
    assert.match(
      unsigned.stderr,
      /^tessera: error: unauthenticated: [^\n]*\(pass --key <name> to sign the read\)\n$/,
    );
  });

  it("history pages through the entries, newest first, and filters by kind", { skip }, async () => {
    const firstPage = await tessera(["wallet", "history", "--key", "alice", "--limit", "1"]);
    assert.equal(firstPage.code, 0, firstPage.stderr);
    const lines = firstPage.stdout.trimEnd().split("\n");
    assert.match(lines[0] ?? "", /^TIME\s+KIND\s+COUNTERPARTY\s+AMOUNT\s+ID$/);
    assert.match(lines[1] ?? "", new RegExp(`\\stransfer\\s+${bob.address}\\s+-1500\\s`));
    const token = lines[2]?.match(/^next page token: (\S+)$/)?.[1];
    assert.ok(token, firstPage.stdout);

    const secondPage = await tessera([
      "wallet",
      "history",
      "--key",
      "alice",
      "--limit",
      "1",
      "--page-token",
      token,
    ]);
    assert.equal(secondPage.code, 0, secondPage.stderr);
    // Genesis: minted from the faucet account.
    assert.match(secondPage.stdout, new RegExp(`\\sfaucet\\s+faucet\\s+\\+${MAX_AMOUNT}\\s`));
    assert.doesNotMatch(secondPage.stdout, /next page token/);

    const transfers = await tessera(["wallet", "history", "--key", "alice", "--kind", "transfer"]);
    assert.equal(transfers.code, 0, transfers.stderr);
    assert.equal(transfers.stdout.trimEnd().split("\n").length, 2, transfers.stdout);

    const json = await tessera(["wallet", "history", "--key", "alice", "--json"]);
    const page = JSON.parse(json.stdout);
    assert.deepEqual(
      page.transactions.map((t: { kind: string; amount: string }) => [t.kind, t.amount]),
      [
        ["TRANSACTION_KIND_TRANSFER", "1500"],
        ["TRANSACTION_KIND_FAUCET", MAX_AMOUNT],
      ],
    );
    assert.equal(page.nextPageToken, "");
  });

  it("escrow show prints an escrow the key is a party of", { skip }, async () => {
    const arbiter = generateKeyPair();
    const expiresAt = new Date(Date.now() + 3_600_000);
    await withServiceClient(
      WalletService,
      { baseUrl: wallet.url, signer: { keyPair: alice, target: walletAddress } },
      (client) =>
        client.createEscrow({
          protocolVersion: CLI_PROTOCOL_VERSION,
          escrowId: "job-1.escrow",
          jobId: "job-1",
          payerAddress: alice.address,
          amount: "700",
          arbiterAddress: arbiter.address,
          expiresAt: timestampFromDate(expiresAt),
        }),
    );
    const shown = await tessera(["wallet", "escrow", "show", "job-1.escrow", "--key", "alice"]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(field(shown.stdout, "escrow id"), "job-1.escrow");
    assert.equal(field(shown.stdout, "state"), "held");
    assert.equal(field(shown.stdout, "job id"), "job-1");
    assert.equal(field(shown.stdout, "payer"), alice.address);
    assert.equal(field(shown.stdout, "arbiter"), arbiter.address);
    assert.equal(field(shown.stdout, "amount"), "700");
    assert.equal(field(shown.stdout, "expires at"), expiresAt.toISOString());
    assert.equal(field(shown.stdout, "payment tree"), "none");
    assert.equal((await balanceOf("alice")).held, "700");

    const json = await tessera([
      "wallet",
      "escrow",
      "show",
      "job-1.escrow",
      "--key",
      "alice",
      "--json",
    ]);
    assert.equal(JSON.parse(json.stdout).escrow.state, "ESCROW_STATE_HELD");

    const missing = await tessera(["wallet", "escrow", "show", "no-such", "--key", "alice"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^tessera: error: not_found: [^\n]+\n$/);
  });

  it("faucet mints to the key's own address on a development wallet", { skip }, async () => {
    const run = await tessera(["wallet", "faucet", "--key", "nobody", "--amount", "5"]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal((await balanceOf("nobody")).available, "5");
    const again = await tessera(["wallet", "faucet", "--key", "nobody", "--amount", "0"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^tessera: error: /);
    assert.equal((await balanceOf("nobody")).available, "5");
  });

  it("no money was made or lost by anything the CLI did", { skip }, async () => {
    const alices = await balanceOf("alice");
    const bobs = await balanceOf("bob", "bob's pass\n");
    const total = [alices, bobs].reduce(
      (sum, b) => sum + BigInt(b.available ?? "0") + BigInt(b.held ?? "0"),
      0n,
    );
    assert.equal(total, BigInt(MAX_AMOUNT));
  });
});
