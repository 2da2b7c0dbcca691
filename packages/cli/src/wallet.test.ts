// `tessera wallet ...` against real servers on port 0: what the CLI sends and how it reports
// failures (a server that only records requests and never pays), and the whole loop against the
// real wallet service when it is built (see wallet-e2e.test.ts).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { callerOf, createVerifyingInterceptor, type NonceHighWaterStore } from "@tessera/auth";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { createKeystore } from "@tessera/identity/keystore";
import { TransactionKind } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import {
  type GetBalanceRequest,
  type GetEscrowRequest,
  type GetTransactionHistoryRequest,
  type TransferRequest,
  WalletService,
} from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { createLogger, type ServiceServer, startServiceServer } from "@tessera/runtime";
import { runInProcess } from "./test-cli-context.js";

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(packageDir, "bin", "tessera.js");
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** 2^64 + 1: more than a uint64 and far more than a JS number holds exactly. */
const HUGE = "18446744073709551617";

/** One request as the server's handler saw it, after the signature check. */
interface Recorded {
  readonly method: string;
  /** The verified signer, or undefined for an unsigned read. */
  readonly caller: string | undefined;
  readonly request:
    | TransferRequest
    | GetBalanceRequest
    | GetTransactionHistoryRequest
    | GetEscrowRequest;
}

/** In-memory replay guard for the test server: nonces must increase per caller. */
function memoryNonces(): NonceHighWaterStore {
  const marks = new Map<string, bigint>();
  return {
    async advance(caller, nonce) {
      const mark = marks.get(caller);
      if (mark !== undefined && nonce <= mark) return false;
      marks.set(caller, nonce);
      return true;
    },
  };
}

/**
 * A real runtime server with the verifying interceptor, whose WalletService handlers record each
 * request and then refuse it: it checks what the CLI sends and how it prints a refusal, and can
 * never stand in for a wallet (it answers no call with success).
 */
async function startRecordingServer(
  selfAddress: string,
  recorded: Recorded[],
): Promise<ServiceServer> {
  const refuse = (method: string, request: Recorded["request"], ctx: HandlerContext): never => {
    recorded.push({ method, caller: callerOf(ctx), request });
    throw new ConnectError(
      "recorded by the test server, which is not a wallet",
      Code.Unimplemented,
    );
  };
  return startServiceServer({
    service: "cli-test",
    logger: createLogger({ service: "cli-test", level: "silent" }),
    host: "127.0.0.1",
    port: 0,
    limits: { maxMessageBytes: 1024 * 1024, defaultDeadlineMs: 30_000, maxDeadlineMs: 60_000 },
    files: [],
    routes(router: ConnectRouter) {
      router.service(WalletService, {
        async transfer(req, ctx) {
          return refuse("transfer", req, ctx);
        },
        async getBalance(req, ctx) {
          return refuse("getBalance", req, ctx);
        },
        async getTransactionHistory(req, ctx) {
          return refuse("getTransactionHistory", req, ctx);
        },
        async getEscrow(req, ctx) {
          return refuse("getEscrow", req, ctx);
        },
      });
    },
    interceptors: [
      createVerifyingInterceptor({
        selfAddress,
        nonceStore: memoryNonces(),
      }),
    ],
  });
}

describe("tessera wallet: arguments are checked before anything is sent", () => {
  let home: string;
  let env: Record<string, string>;
  let plain: string;
  before(async () => {
    home = await mkdtemp(join(tmpdir(), "tessera-cli-wallet-args-"));
    const keystore = createKeystore({ homeDir: home, scryptCost: { N: 2 ** 4, r: 8, p: 1 } });
    plain = (await keystore.create("plain")).entry.address;
    await keystore.create("locked", { password: "pw" });
    // Port 1 refuses connections: a command that got as far as calling would say "unavailable".
    env = {
      TESSERA_HOME: home,
      TESSERA_WALLET_URL: "http://127.0.0.1:1",
      TESSERA_WALLET_ADDRESS: generateKeyPair().address,
    };
  });
  after(async () => {
    await rm(home, { recursive: true, force: true });
  });

  const transfer = (...extra: string[]) => transferAs("plain", ...extra);
  const transferAs = (key: string, ...extra: string[]) => [
    "wallet",
    "transfer",
    "--key",
    key,
    ...extra,
  ];

  it("transfer needs --key, --to and --amount", async () => {
    const run = await runInProcess(["wallet", "transfer", "--to", plain, "--amount", "5"], env);
    assert.equal(run.code, 1);
    assert.equal(run.stderr, "tessera: error: required option '--key <name>' not specified\n");
    const noAmount = await runInProcess(transfer("--to", plain), env);
    assert.match(noAmount.stderr, /^tessera: error: required option '--amount <base units>'/);
  });

  it("refuses a bad amount, a bad recipient and a bad id with one line each", async () => {
    const cases: Array<[string[], RegExp]> = [
      [transfer("--to", plain, "--amount", "12.5"), /--amount must be a whole number/],
      [transfer("--to", plain, "--amount", "-3"), /--amount must be a whole number/],
      [transfer("--to", plain, "--amount", "0"), /--amount must be greater than zero/],
      [transfer("--to", "bob", "--amount", "3"), /--to is not a valid address/],
      [transfer("--to", plain, "--amount", "3", "--id", "has space"), /--id must be 1 to 128/],
    ];
    for (const [args, message] of cases) {
      const run = await runInProcess(args, env);
      assert.equal(run.code, 1, args.join(" "));
      assert.equal(run.stdout, "");
      assert.match(run.stderr, /^tessera: error: [^\n]*\n$/);
      assert.match(run.stderr, message);
      assert.doesNotMatch(run.stderr, /unavailable/, "nothing may be sent");
    }
  });

  it("balance and history need an address or a key", async () => {
    for (const command of ["balance", "history"]) {
      const run = await runInProcess(["wallet", command], env);
      assert.equal(run.code, 1);
      assert.equal(run.stderr, "tessera: error: name an address, or pass --key <name>\n");
    }
    const bad = await runInProcess(["wallet", "balance", "tsr1notanaddress"], env);
    assert.match(bad.stderr, /^tessera: error: address is not a valid address/);
  });

  it("an encrypted key needs --password-stdin when stdin is not a terminal", async () => {
    const run = await runInProcess(transferAs("locked", "--to", plain, "--amount", "3"), env);
    assert.equal(run.code, 1);
    assert.equal(
      run.stderr,
      'tessera: error: key "locked" is encrypted and stdin is not a terminal: pass --password-stdin to pipe its password in\n',
    );
    const wrong = await runInProcess(
      [...transferAs("locked", "--to", plain, "--amount", "3"), "--password-stdin"],
      env,
      "not it\n",
    );
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /^tessera: error: wrong password for key "locked"/);
  });

  it("a signed call without a known wallet address says how to give one", async () => {
    const run = await runInProcess(transfer("--to", plain, "--amount", "3"), {
      TESSERA_HOME: home,
      TESSERA_DATA_DIR: join(home, "no-devnet"),
    });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^tessera: error: the wallet's address is unknown: no key file at /);
  });

  it("--help documents where the wallet and its address come from", async () => {
    const run = await runInProcess(["wallet", "transfer", "--help"], env);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /--wallet-url <url>/);
    assert.match(run.stdout, /TESSERA_WALLET_ADDRESS/);
    assert.match(run.stdout, /<data dir>\/wallet\/key\.json/);
    assert.match(run.stdout, /--id <the printed id>/);
  });
});

describe("tessera wallet: what reaches a real server", () => {
  const walletKey = generateKeyPair();
  const recipient = generateKeyPair().address;
  const recorded: Recorded[] = [];
  let server: ServiceServer;
  let home: string;
  let env: Record<string, string>;
  let alice: KeyPair;
  let carol: KeyPair;

  before(async () => {
    home = await mkdtemp(join(tmpdir(), "tessera-cli-wallet-"));
    const keystore = createKeystore({ homeDir: home, scryptCost: { N: 2 ** 4, r: 8, p: 1 } });
    alice = (await keystore.create("alice")).keyPair;
    carol = (await keystore.create("carol", { password: "carol's pass" })).keyPair;
    server = await startRecordingServer(walletKey.address, recorded);
    env = {
      TESSERA_HOME: home,
      TESSERA_WALLET_URL: server.url,
      TESSERA_WALLET_ADDRESS: walletKey.address,
    };
  });
  after(async () => {
    await server.close();
    await rm(home, { recursive: true, force: true });
  });

  const last = (): Recorded => {
    const call = recorded.at(-1);
    assert.ok(call, "the server recorded no call");
    return call;
  };

  it("transfer is signed by the key for the wallet's address and carries the amount exactly", async () => {
    const before = recorded.length;
    const run = await runInProcess(
      ["wallet", "transfer", "--key", "alice", "--to", recipient, "--amount", `000${HUGE}`],
      env,
    );
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    assert.equal(
      run.stderr,
      "tessera: error: unimplemented: recorded by the test server, which is not a wallet\n",
    );
    assert.equal(recorded.length, before + 1);
    const call = last();
    assert.equal(call.method, "transfer");
    assert.equal(call.caller, alice.address);
    const request = call.request as TransferRequest;
    assert.equal(request.fromAddress, alice.address);
    assert.equal(request.toAddress, recipient);
    assert.equal(request.amount, HUGE);
    assert.match(request.transferId, UUID);
    assert.equal(request.protocolVersion?.major, 1);
  });

  it("transfer sends the given --id, --memo and --reference; an encrypted key reads stdin", async () => {
    const run = await runInProcess(
      [
        "wallet",
        "transfer",
        "--key",
        "carol",
        "--password-stdin",
        "--to",
        recipient,
        "--amount",
        "42",
        "--id",
        "pay:fee.1",
        "--memo",
        "subnet fee",
        "--reference",
        "quote-7",
      ],
      env,
      "carol's pass\n",
    );
    assert.equal(run.code, 1);
    const call = last();
    assert.equal(call.caller, carol.address);
    const request = call.request as TransferRequest;
    assert.equal(request.transferId, "pay:fee.1");
    assert.equal(request.memo, "subnet fee");
    assert.equal(request.referenceId, "quote-7");
    assert.equal(request.fromAddress, carol.address);
  });

  it("a wrong --wallet-address is refused by the server, with nothing recorded", async () => {
    const before = recorded.length;
    const run = await runInProcess(
      [
        "wallet",
        "transfer",
        "--key",
        "alice",
        "--to",
        recipient,
        "--amount",
        "1",
        "--wallet-address",
        generateKeyPair().address,
      ],
      env,
    );
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /^tessera: error: unauthenticated: signed request rejected: wrong target[^\n]*\n$/,
    );
    assert.equal(recorded.length, before);
  });

  it("when the wallet cannot be reached, the error names the transfer id to retry with", async () => {
    const run = await runInProcess(
      ["wallet", "transfer", "--key", "alice", "--to", recipient, "--amount", "1"],
      { ...env, TESSERA_WALLET_URL: "http://127.0.0.1:1" },
    );
    assert.equal(run.code, 1);
    const match = run.stderr.match(
      /^tessera: error: unavailable: [^\n]*\(transfer id (\S+): retry with --id (\S+), it cannot pay twice\)\n$/,
    );
    assert.ok(match, run.stderr);
    assert.match(match[1] ?? "", UUID);
    assert.equal(match[2], match[1]);
  });

  it("balance of an address is an unsigned read; with --key it is signed and defaults to the key", async () => {
    await runInProcess(["wallet", "balance", recipient], env);
    assert.deepEqual(
      { method: last().method, caller: last().caller },
      { method: "getBalance", caller: undefined },
    );
    assert.equal((last().request as GetBalanceRequest).address, recipient);

    await runInProcess(["wallet", "balance", "--key", "alice"], env);
    assert.equal(last().caller, alice.address);
    assert.equal((last().request as GetBalanceRequest).address, alice.address);

    // A signed read of another address (a service allowed to read it).
    await runInProcess(["wallet", "balance", recipient, "--key", "alice"], env);
    assert.equal(last().caller, alice.address);
    assert.equal((last().request as GetBalanceRequest).address, recipient);
  });

  it("history sends the kinds, page size and page token", async () => {
    await runInProcess(
      [
        "wallet",
        "history",
        "--key",
        "alice",
        "--kind",
        "transfer,escrow-release",
        "--kind",
        "faucet",
        "--limit",
        "25",
        "--page-token",
        "next-2",
      ],
      env,
    );
    const call = last();
    assert.equal(call.method, "getTransactionHistory");
    assert.equal(call.caller, alice.address);
    const request = call.request as GetTransactionHistoryRequest;
    assert.equal(request.address, alice.address);
    assert.deepEqual(request.kinds, [
      TransactionKind.TRANSFER,
      TransactionKind.ESCROW_RELEASE,
      TransactionKind.FAUCET,
    ]);
    assert.equal(request.pageSize, 25);
    assert.equal(request.pageToken, "next-2");
  });

  it("escrow show asks for the escrow by id, signed when --key is given", async () => {
    await runInProcess(["wallet", "escrow", "show", "job-9:escrow"], env);
    assert.equal(last().method, "getEscrow");
    assert.equal(last().caller, undefined);
    assert.equal((last().request as GetEscrowRequest).escrowId, "job-9:escrow");
    await runInProcess(["wallet", "escrow", "show", "job-9:escrow", "--key", "alice"], env);
    assert.equal(last().caller, alice.address);
  });

  it("the built CLI closes its connection and exits after a call", async () => {
    if (!existsSync(join(packageDir, "dist", "main.js"))) {
      throw new Error("dist/main.js is missing: run `pnpm --filter @tessera/cli build` first");
    }
    const before = recorded.length;
    const child = spawn(process.execPath, [bin, "wallet", "balance", recipient], {
      env: { PATH: process.env.PATH, HOME: home, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
      stderr += text;
    });
    // An HTTP/2 session left open would keep the child alive and this wait would never end.
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 1);
    assert.equal(
      stderr,
      "tessera: error: unimplemented: recorded by the test server, which is not a wallet\n",
    );
    assert.equal(recorded.length, before + 1);
  });
});
