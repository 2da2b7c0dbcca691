// Test-only helpers for the ledger's and the wallet service's tests: a store with the wallet's
// migrations, a fake clock, validator keys and signed completion validations.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { sha256 } from "@tessera/identity/hash";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import { signComputeCompletion, signTerms } from "@tessera/identity/validation-bundle";
import {
  CompletionTermsSchema,
  type CompletionValidation,
  CompletionValidationSchema,
  ComputeCompletionSchema,
  type PaymentTree,
  PaymentTreeSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import { type NonceStoreTables, nonceStoreMigrations, type Store } from "@tessera/store";
import type { StoreBackend } from "@tessera/store/testing";
import { createLedger, type FaucetOptions, type Ledger } from "./ledger.js";
import { walletMigrations } from "./migrations.js";
import type { WalletTables } from "./tables.js";
import { createFixedValidatorSet, type ValidatorSetSource } from "./validator-set-source.js";

export type WalletDb = WalletTables & NonceStoreTables;

/** Opens the wallet's store (every migration) in `space` of the suite's backend. */
export function openWalletStore(backend: StoreBackend, space?: string): Promise<Store<WalletDb>> {
  return backend.open<WalletDb>({
    migrations: { ...nonceStoreMigrations, ...walletMigrations },
    ...(space === undefined ? {} : { space }),
  });
}

/** A clock the test moves by hand. */
export interface FakeClock {
  readonly now: () => Date;
  advance(ms: number): void;
}

export function createFakeClock(start = new Date("2030-01-01T00:00:00Z")): FakeClock {
  let ms = start.getTime();
  return {
    now: () => new Date(ms),
    advance(delta) {
      ms += delta;
    },
  };
}

/** A validator set of `count` fresh keys of which `quorum` must sign. */
export interface TestValidators {
  readonly keys: readonly KeyPair[];
  readonly addresses: readonly string[];
  readonly quorum: number;
  readonly source: ValidatorSetSource;
}

export function createTestValidators(count = 5, quorum = 3): TestValidators {
  const keys = Array.from({ length: count }, () => generateKeyPair());
  const addresses = keys.map((key) => key.address);
  return { keys, addresses, quorum, source: createFixedValidatorSet({ addresses, quorum }) };
}

/** A four-way tree paying `amounts` = [compute, gateway, validators, treasury]. */
export function paymentTree(
  amounts: readonly [bigint, bigint, bigint, bigint],
  payees: {
    readonly compute: string;
    readonly gateway: string;
    readonly validators: readonly string[];
    readonly treasury: string;
  },
): PaymentTree {
  return create(PaymentTreeSchema, {
    computeAmount: amounts[0].toString(),
    gatewayAmount: amounts[1].toString(),
    validatorAmount: amounts[2].toString(),
    treasuryAmount: amounts[3].toString(),
    computeAddress: payees.compute,
    gatewayAddress: payees.gateway,
    validatorAddresses: [...payees.validators],
    treasuryAddress: payees.treasury,
  });
}

/** What {@link completionValidation} signs. */
export interface CompletionFields {
  /** The job or task id (the escrow's job id). */
  readonly requestId: string;
  readonly tree: PaymentTree;
  /** The compute node that did the work; its key signs the completion. */
  readonly node: KeyPair;
  /** The validators that sign the terms. */
  readonly signers: readonly KeyPair[];
  /** Defaults to true. */
  readonly approved?: boolean;
}

const SIGNED_AT = new Date("2030-01-01T00:00:00Z");

/** A completion validation as the registry assembles it: node-signed completion, M signatures. */
export function completionValidation(fields: CompletionFields): CompletionValidation {
  const completion = signComputeCompletion(
    create(ComputeCompletionSchema, {
      protocolVersion: { major: 1 },
      requestId: fields.requestId,
      computeNodeAddress: fields.node.address,
      resultHash: sha256(new TextEncoder().encode(fields.requestId)),
      completedAt: timestampFromDate(SIGNED_AT),
      computationTimeMs: 5n,
    }),
    fields.node,
  );
  const terms = create(CompletionTermsSchema, {
    protocolVersion: { major: 1 },
    requestId: fields.requestId,
    computeCompletion: completion,
    route: { computeNodeId: "node", computeNodeAddress: fields.node.address },
    paymentTree: fields.tree,
    approved: fields.approved ?? true,
  });
  return create(CompletionValidationSchema, {
    terms,
    validatorSignatures: fields.signers.map((key) => signTerms(key, terms, SIGNED_AT)),
  });
}

/** Options of {@link openTestLedger}. */
export interface TestLedgerOptions {
  readonly space?: string;
  readonly clock?: FakeClock;
  readonly validators?: TestValidators;
  readonly faucet?: FaucetOptions;
  readonly readers?: readonly string[];
}

/** A ledger over a fresh store in `space`, with a fake clock and a 3-of-5 validator set. */
export async function openTestLedger(
  backend: StoreBackend,
  options: TestLedgerOptions = {},
): Promise<{
  ledger: Ledger;
  store: Store<WalletDb>;
  clock: FakeClock;
  validators: TestValidators;
}> {
  const store = await openWalletStore(backend, options.space);
  const clock = options.clock ?? createFakeClock();
  const validators = options.validators ?? createTestValidators();
  const ledger = createLedger({
    store,
    validatorSet: validators.source,
    clock: clock.now,
    faucet: options.faucet,
    readers: options.readers,
  });
  return { ledger, store, clock, validators };
}
