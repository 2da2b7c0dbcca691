/**
 * Escrow throughput: create an escrow, then release it with a four-way split (compute node,
 * gateway, three validators, treasury), 64 pairs in flight, in-process ledger calls, on SQLite
 * and on PostgreSQL. Each release carries a 3-of-5 completion validation that the ledger verifies
 * (three validator signatures and the node's completion signature); the validations are signed
 * before the clock starts, as validators would sign them elsewhere. The invariants are checked
 * after each run.
 *
 *   pnpm --filter @tessera/wallet bench
 *   BENCH_PAIRS=20000 BENCH_IN_FLIGHT=64 TEST_DATABASE_URL=postgres://… node --import tsx bench/escrow.bench.ts
 *
 * PostgreSQL comes from TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test); the
 * run uses a schema of its own and drops it afterwards.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPair } from "@tessera/identity/keys";
import type { CompletionValidation } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { openStore, type Store } from "@tessera/store";
import { sql } from "kysely";
import { createLedger } from "../src/ledger/ledger.js";
import { walletMigrations } from "../src/ledger/migrations.js";
import type { WalletTables } from "../src/ledger/tables.js";
import {
  completionValidation,
  createTestValidators,
  paymentTree,
} from "../src/ledger/test-fixtures.js";

const PAIRS = Number(process.env.BENCH_PAIRS ?? 10_000);
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 64);
const DATABASE_URL = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const AMOUNT = 1_000_000n;

const validators = createTestValidators(5, 3);
const payers = Array.from({ length: IN_FLIGHT }, () => generateKeyPair());
const arbiter = generateKeyPair();
const node = generateKeyPair();
const gateway = generateKeyPair();
const treasury = generateKeyPair();
// 80 % compute, 10 % gateway, 5 % validators (three of them: 16,667 / 16,667 / 16,666), 5 % treasury.
const tree = paymentTree([800_000n, 100_000n, 50_000n, 50_000n], {
  compute: node.address,
  gateway: gateway.address,
  validators: validators.addresses.slice(0, 3),
  treasury: treasury.address,
});

function signApprovals(count: number): CompletionValidation[] {
  return Array.from({ length: count }, (_, i) =>
    completionValidation({
      requestId: `job-${i}`,
      tree,
      node,
      signers: validators.keys.slice(0, 3),
    }),
  );
}

async function run(label: string, store: Store<WalletTables>, approvals: CompletionValidation[]) {
  const ledger = createLedger({ store, validatorSet: validators.source });
  const perPayer = (AMOUNT * BigInt(Math.ceil(PAIRS / IN_FLIGHT) + 1)).toString();
  await ledger.applyGenesis(payers.map((payer) => ({ address: payer.address, amount: perPayer })));
  const expiresAt = new Date(Date.now() + 3_600_000);
  let next = 0;
  const cpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  await Promise.all(
    payers.map(async (payer) => {
      for (let i = next++; i < PAIRS; i = next++) {
        await ledger.createEscrow(payer.address, {
          escrowId: `escrow-${i}`,
          jobId: `job-${i}`,
          payerAddress: payer.address,
          amount: AMOUNT.toString(),
          arbiterAddress: arbiter.address,
          expiresAt,
          paymentTree: tree,
        });
        await ledger.releaseEscrow(arbiter.address, {
          escrowId: `escrow-${i}`,
          completionValidation: approvals[i],
        });
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  const cpuMsPerPair = (cpu.user + cpu.system) / 1000 / PAIRS;
  const checkStarted = process.hrtime.bigint();
  const report = await ledger.checkInvariants();
  const checkSeconds = Number(process.hrtime.bigint() - checkStarted) / 1e9;
  await ledger.close();
  const nodeBalance = await ledger.balance(node.address, node.address);
  if (nodeBalance.available !== 800_000n * BigInt(PAIRS)) {
    throw new Error(
      `${label}: the compute node holds ${nodeBalance.available}, not ${800_000n * BigInt(PAIRS)}`,
    );
  }
  if (report.violations.length > 0) {
    throw new Error(`${label}: invariants violated:\n${report.violations.join("\n")}`);
  }
  console.log(
    `${label.padEnd(10)} ${PAIRS} escrow create+release pairs (4-way split, 3-of-5 approval) in ${seconds.toFixed(2)} s: ` +
      `${Math.round(PAIRS / seconds)} pairs/s, ${IN_FLIGHT} in flight, ` +
      `${cpuMsPerPair.toFixed(2)} ms of wallet CPU (all threads) per pair; ` +
      `invariants hold over ${report.accounts} accounts and ${report.entries} entries (checked in ${checkSeconds.toFixed(2)} s)`,
  );
}

console.log(
  `node ${process.version}, ${availableParallelism()} CPUs; signing ${PAIRS} approvals before each run…`,
);

const dataDir = await mkdtemp(join(tmpdir(), "wallet-bench-"));
try {
  const sqlite = await openStore<WalletTables>({
    dataDir,
    fileName: "wallet.sqlite",
    migrations: walletMigrations,
  });
  await run("sqlite", sqlite, signApprovals(PAIRS));
  await sqlite.close();
} finally {
  await rm(dataDir, { recursive: true, force: true });
}

const schema = `wallet_bench_${randomBytes(4).toString("hex")}`;
const postgres = await openStore<WalletTables>({
  databaseUrl: DATABASE_URL,
  dataDir: tmpdir(),
  fileName: "unused.sqlite",
  schema,
  migrations: walletMigrations,
});
try {
  await run("postgres", postgres, signApprovals(PAIRS));
} finally {
  await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(postgres.db);
  await postgres.close();
}
