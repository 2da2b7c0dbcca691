import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor } from "@tessera/auth";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { loggedAddress, type SpawnedService, spawnService } from "@tessera/testkit/spawn-service";
import { standaloneServiceSuite } from "@tessera/testkit/standalone-service-suite";
import { walletServices } from "./server.js";

const entry = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const dataDir = await mkdtemp(join(tmpdir(), "wallet-main-"));
after(() => rm(dataDir, { recursive: true, force: true }));
const version = { major: 1 };

describe("wallet process", () => {
  standaloneServiceSuite({
    entry,
    env: { DATA_DIR: join(dataDir, "suite") },
    services: walletServices,
    expectUnimplemented: false,
  });
});

function signedClient(wallet: SpawnedService, key: KeyPair) {
  const session = new Http2SessionManager(wallet.url);
  const client = createClient(
    WalletService,
    createGrpcTransport({
      baseUrl: wallet.url,
      sessionManager: session,
      interceptors: [createSigningInterceptor({ keyPair: key, target: loggedAddress(wallet) })],
    }),
  );
  return { client, close: () => session.abort() };
}

async function balanceOf(client: Client<typeof WalletService>, address: string): Promise<bigint> {
  const { total } = await client.getBalance({ protocolVersion: version, address });
  return BigInt(total);
}

describe("kill -9 during a load of transfers", () => {
  test("every acknowledged transfer survives the crash and no money is created or lost", async () => {
    const payer = generateKeyPair();
    const payee = generateKeyPair();
    const supply = 1_000_000n;
    const env = { DATA_DIR: join(dataDir, "crash"), GENESIS: `${payer.address}=${supply}` };
    const first = await spawnService({ entry, env });
    const { client, close } = signedClient(first, payer);
    const acknowledged = new Set<string>();
    let next = 0;
    let stopped = false;
    // 16 workers send 1-unit transfers with fresh ids until the process dies under them.
    const worker = async () => {
      while (!stopped) {
        const transferId = `t-${next++}`;
        try {
          await client.transfer({
            protocolVersion: version,
            transferId,
            fromAddress: payer.address,
            toAddress: payee.address,
            amount: "1",
          });
          acknowledged.add(transferId);
        } catch {
          return; // the wallet is gone
        }
      }
    };
    const workers = Array.from({ length: 16 }, worker);
    while (acknowledged.size < 200) await new Promise((resolve) => setTimeout(resolve, 10));
    first.child.kill("SIGKILL");
    await Promise.all(workers);
    stopped = true;
    close();
    await first.stop();

    const second = await spawnService({ entry, env });
    const reader = signedClient(second, payer);
    try {
      const recorded = new Set<string>();
      let pageToken = "";
      do {
        const page = await reader.client.getTransactionHistory({
          protocolVersion: version,
          address: payer.address,
          pageSize: 100,
          pageToken,
        });
        for (const tx of page.transactions) recorded.add(tx.transactionId);
        pageToken = page.nextPageToken;
      } while (pageToken);
      const lost = [...acknowledged].filter((id) => !recorded.has(id));
      assert.deepEqual(
        lost,
        [],
        `acknowledged but lost after kill -9 (${acknowledged.size} acked)`,
      );
      const paid = await balanceOf(reader.client, payer.address);
      const payeeReader = signedClient(second, payee);
      try {
        const received = await balanceOf(payeeReader.client, payee.address);
        assert.equal(paid + received, supply, "money created or destroyed");
        assert.ok(
          received >= BigInt(acknowledged.size),
          "fewer transfers applied than acknowledged",
        );
      } finally {
        payeeReader.close();
      }
    } finally {
      reader.close();
      await second.stop();
    }
  });
});
