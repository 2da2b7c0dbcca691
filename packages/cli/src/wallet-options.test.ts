import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createKeyFile, writeKeyFile } from "@tessera/identity/key-file";
import { generateKeyPair } from "@tessera/identity/keys";
import { TransactionKind } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import { CliError } from "./cli-error.js";
import {
  DEFAULT_WALLET_URL,
  parseAddress,
  parseAmount,
  parseClientId,
  parseKinds,
  parseLimit,
  resolveWalletAddress,
  resolveWalletUrl,
} from "./wallet-options.js";

describe("parseAmount", () => {
  it("keeps amounts beyond 2^53 and 2^64 exact, as strings", () => {
    assert.equal(parseAmount("9007199254740993"), "9007199254740993");
    assert.equal(parseAmount("18446744073709551617"), "18446744073709551617");
    assert.equal(parseAmount("1500"), "1500");
  });

  it("drops leading zeros", () => {
    assert.equal(parseAmount("000120"), "120");
  });

  it("refuses signs, fractions, exponents, spaces, hex and empty input with one clear error", () => {
    for (const bad of ["-5", "+5", "1.5", "1e3", " 5", "5 ", "0x10", "", "1_000", "１"]) {
      assert.throws(() => parseAmount(bad), {
        name: "CliError",
        message: new RegExp(
          `^--amount must be a whole number of base units .*${JSON.stringify(bad).replace(/[+.]/g, "\\$&")}$`,
        ),
      });
    }
  });

  it("refuses zero, however written", () => {
    for (const zero of ["0", "000"]) {
      assert.throws(() => parseAmount(zero), {
        name: "CliError",
        message: "--amount must be greater than zero",
      });
    }
  });
});

describe("parseAddress and parseClientId", () => {
  const address = generateKeyPair().address;

  it("accepts a real address and refuses a mistyped one", () => {
    assert.equal(parseAddress(address, "--to"), address);
    const typo = `${address.slice(0, -1)}${address.endsWith("q") ? "p" : "q"}`;
    assert.throws(() => parseAddress(typo, "--to"), /^CliError: --to is not a valid address/);
    assert.throws(() => parseAddress("alice", "--to"), CliError);
  });

  it("accepts UUIDs and the wallet's id alphabet, refuses spaces, slashes and 129 characters", () => {
    assert.equal(
      parseClientId("7d3c2a8e-0f1b-4c55-9a0e-2b8f4c1d9e77"),
      "7d3c2a8e-0f1b-4c55-9a0e-2b8f4c1d9e77",
    );
    assert.equal(parseClientId("pay:subnet.fee_1"), "pay:subnet.fee_1");
    assert.equal(parseClientId("x".repeat(128)), "x".repeat(128));
    for (const bad of ["", "a b", "a/b", "x".repeat(129), "é"]) {
      assert.throws(() => parseClientId(bad), /^CliError: --id must be 1 to 128 of/);
    }
  });
});

describe("parseKinds and parseLimit", () => {
  it("reads comma-separated and repeated kinds, with - or _, in order and without duplicates", () => {
    const first = parseKinds("transfer,escrow-release");
    assert.deepEqual(first, [TransactionKind.TRANSFER, TransactionKind.ESCROW_RELEASE]);
    assert.deepEqual(parseKinds("ESCROW_LOCK, transfer", first), [
      TransactionKind.TRANSFER,
      TransactionKind.ESCROW_RELEASE,
      TransactionKind.ESCROW_LOCK,
    ]);
    assert.deepEqual(parseKinds("faucet"), [TransactionKind.FAUCET]);
  });

  it("names the known kinds when one is unknown; 'unspecified' is not a filter", () => {
    assert.throws(() => parseKinds("transfer,refund"), {
      message:
        'unknown --kind "refund": use transfer, escrow-lock, escrow-release, escrow-refund, stake-lock, stake-unlock, stake-slash, faucet',
    });
    assert.throws(() => parseKinds("unspecified"), CliError);
  });

  it("takes page sizes 1 to 1000 only", () => {
    assert.equal(parseLimit("1"), 1);
    assert.equal(parseLimit("1000"), 1000);
    for (const bad of ["0", "1001", "-1", "2.5", "ten", ""]) {
      assert.throws(() => parseLimit(bad), /^CliError: --limit must be/);
    }
  });
});

describe("resolveWalletUrl", () => {
  it("prefers the option, then TESSERA_WALLET_URL, then the devnet's port", () => {
    const env = { TESSERA_WALLET_URL: "http://wallet:8080" };
    assert.equal(resolveWalletUrl("http://a:1", env), "http://a:1");
    assert.equal(resolveWalletUrl(undefined, env), "http://wallet:8080");
    assert.equal(resolveWalletUrl(undefined, {}), DEFAULT_WALLET_URL);
    assert.equal(DEFAULT_WALLET_URL, "http://127.0.0.1:7005");
  });
});

describe("resolveWalletAddress", () => {
  let dir: string;
  const walletKey = generateKeyPair();
  const other = generateKeyPair();
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-wallet-address-"));
    // A devnet data directory: <data dir>/wallet/key.json, an encrypted one (no password needed
    // to read its address).
    await mkdir(join(dir, "data", "wallet"), { recursive: true });
    await writeKeyFile(
      join(dir, "data", "wallet", "key.json"),
      await createKeyFile("wallet", walletKey, {
        password: "pw",
        scryptCost: { N: 2 ** 4, r: 8, p: 1 },
      }),
    );
    // A repository whose devnet ran with the default data dir.
    await mkdir(join(dir, "repo", ".tessera-data", "wallet"), { recursive: true });
    await writeKeyFile(
      join(dir, "repo", ".tessera-data", "wallet", "key.json"),
      await createKeyFile("wallet", other),
    );
    await mkdir(join(dir, "broken", "wallet"), { recursive: true });
    await writeFile(join(dir, "broken", "wallet", "key.json"), "{not json");
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("prefers --wallet-address, then TESSERA_WALLET_ADDRESS, then the key file", async () => {
    const env = {
      TESSERA_WALLET_ADDRESS: other.address,
      TESSERA_DATA_DIR: join(dir, "data"),
    };
    const repoRoot = join(dir, "repo");
    assert.equal(
      await resolveWalletAddress({ option: walletKey.address, env, repoRoot }),
      walletKey.address,
    );
    assert.equal(await resolveWalletAddress({ env, repoRoot }), other.address);
    assert.equal(
      await resolveWalletAddress({ env: { TESSERA_DATA_DIR: join(dir, "data") }, repoRoot }),
      walletKey.address,
    );
  });

  it("falls back to <repo>/.tessera-data/wallet/key.json when TESSERA_DATA_DIR is unset", async () => {
    assert.equal(
      await resolveWalletAddress({ env: {}, repoRoot: join(dir, "repo") }),
      other.address,
    );
  });

  it("says how to give the address when there is none", async () => {
    await assert.rejects(resolveWalletAddress({ env: {}, repoRoot: join(dir, "nowhere") }), {
      name: "CliError",
      message:
        /^the wallet's address is unknown: pass --wallet-address or set TESSERA_WALLET_ADDRESS/,
    });
    await assert.rejects(
      resolveWalletAddress({ env: { TESSERA_DATA_DIR: join(dir, "empty") }, repoRoot: dir }),
      {
        name: "CliError",
        message: `the wallet's address is unknown: no key file at ${join(dir, "empty", "wallet", "key.json")}; pass --wallet-address or set TESSERA_WALLET_ADDRESS`,
      },
    );
  });

  it("refuses a bad address from any source", async () => {
    await assert.rejects(resolveWalletAddress({ option: "tsr1nope", env: {} }), {
      message: /^--wallet-address is not a valid address/,
    });
    await assert.rejects(resolveWalletAddress({ env: { TESSERA_WALLET_ADDRESS: "wallet" } }), {
      message: /^TESSERA_WALLET_ADDRESS is not a valid address/,
    });
    await assert.rejects(resolveWalletAddress({ env: { TESSERA_DATA_DIR: join(dir, "broken") } }), {
      name: "CliError",
      message: /^cannot read the wallet's address: /,
    });
  });
});
