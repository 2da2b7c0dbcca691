/**
 * The registry's subnet book: binding fee quotes, subnets created against a paid quote, reads
 * and paged lists. Durable on @tessera/store, clock injected, no Connect: errors are
 * {@link DirectoryError}s.
 *
 * Payment: before a subnet is written, the wallet must hold the transfer `payment_transfer_id`
 * from the gateway to the quote's fee address, of at least the quoted fee, whose reference id is
 * the fee quote id (./fee-payments.ts). One transfer pays for one subnet (the transfer id is
 * unique among subnets), and the reference id ties it to one quote. A subnet book without a
 * wallet refuses to create subnets. Validator approval of subnets (PENDING until enough sign,
 * then ACTIVE) comes with a signing RPC for it; until then a created subnet stays PENDING.
 */
import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { isAddress } from "@tessera/identity/address";
import { sha3_256, toHex } from "@tessera/identity/hash";
import {
  type ModelDescriptor,
  ModelDescriptorSchema,
  ProtocolVersionSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type FeeQuote,
  FeeQuoteSchema,
  type PaymentSplit,
  PaymentSplitSchema,
  type SubnetMetadata,
  SubnetMetadataSchema,
  SubnetStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { fromMoney, type Store, toMoney } from "@tessera/store";
import type { Kysely, Selectable, Transaction } from "kysely";
import { fromBase64, toBase64 } from "../directory/base64.js";
import { DirectoryError, RaceLostError } from "../directory/errors.js";
import { decodePageToken, encodePageToken, pageSizeOf } from "../directory/page-token.js";
import { REGISTRY_PROTOCOL_VERSION } from "../directory/protocol-version.js";
import { transactionWithRaceRetry } from "../directory/retry-race.js";
import type { FeePaymentLedger } from "./fee-payments.js";
import type { RegistryFeeQuoteTable, RegistrySubnetTable, SubnetTables } from "./tables.js";

/** The split of the default subnet and of subnets created without one: 80/10/5/5 %. */
export const DEFAULT_PAYMENT_SPLIT: Readonly<
  Pick<PaymentSplit, "computeBps" | "gatewayBps" | "validatorBps" | "treasuryBps">
> = Object.freeze({ computeBps: 8000, gatewayBps: 1000, validatorBps: 500, treasuryBps: 500 });

/** Default lifetime of a fee quote: 15 minutes. */
export const DEFAULT_QUOTE_TTL_MS = 15 * 60_000;
/** Default base fee of a subnet, in base units. */
export const DEFAULT_SUBNET_BASE_FEE = 1_000_000n;
/** Default fee per model a subnet serves, in base units. */
export const DEFAULT_SUBNET_FEE_PER_MODEL = 100_000n;

/** What {@link createSubnets} needs. */
export interface SubnetsOptions<DB extends SubnetTables = SubnetTables> {
  /** The registry's store; its migrations must include `subnetMigrations`. */
  readonly store: Store<DB>;
  /** The time; default the system clock. */
  readonly clock?: (() => Date) | undefined;
  /** Address fees are paid to (the treasury). */
  readonly feeAddress: string;
  /**
   * The wallet's transfers, where fee payments are checked. Undefined when the registry has no
   * wallet: CreateSubnet then fails with "failed_precondition".
   */
  readonly payments?: FeePaymentLedger | undefined;
  /** Fee of any subnet, in base units; default 1,000,000. */
  readonly baseFee?: bigint | undefined;
  /** Fee added per model served, in base units; default 100,000. */
  readonly feePerModel?: bigint | undefined;
  /** How long a quote binds; default 15 minutes. */
  readonly quoteTtlMs?: number | undefined;
  /** The gateway of the default subnet 0, if the network has one; default none. */
  readonly defaultGatewayAddress?: string | undefined;
}

/** A CreateSubnet as the subnet book sees it. */
export interface CreateSubnetInput {
  readonly gatewayAddress: string;
  readonly models: readonly ModelDescriptor[];
  readonly feeQuoteId: string;
  readonly paymentTransferId: string;
  /** SHA-256 of the gateway's subnet configuration: 32 bytes. */
  readonly configHash: Uint8Array;
  /** 1-64 characters. */
  readonly name: string;
  /** Undefined for {@link DEFAULT_PAYMENT_SPLIT}. */
  readonly paymentSplit?: PaymentSplit | undefined;
  readonly free: boolean;
}

/** ListSubnets' filters and paging. */
export interface SubnetPageRequest {
  readonly status?: SubnetStatus | undefined;
  readonly gatewayAddress?: string | undefined;
  readonly modelId?: string | undefined;
  /** 1-500; 0 or undefined means 100; larger values are lowered to 500. */
  readonly pageSize?: number | undefined;
  readonly pageToken?: string | undefined;
}

/** One page of subnets, ordered by id. */
export interface SubnetPage {
  readonly subnets: SubnetMetadata[];
  /** Empty on the last page. */
  readonly nextPageToken: string;
}

/** The subnet book. Every method may throw {@link DirectoryError}. */
export interface Subnets {
  /**
   * Quotes the fee of a subnet serving `models` for `gatewayAddress`; only that gateway (the
   * signed `caller`) may ask and use it. Binding until `expiresAt`, for one CreateSubnet.
   */
  estimateFee(
    gatewayAddress: string,
    models: readonly ModelDescriptor[],
    caller: string,
  ): Promise<FeeQuote>;
  /**
   * Creates a PENDING subnet against an unexpired, unused quote of the caller's, for the quoted
   * model set, paid by the wallet transfer `paymentTransferId` (from the gateway to the quote's
   * fee address, at least the quoted fee, reference id = the quote id). Idempotent on
   * `paymentTransferId`: the same request returns the same subnet, a different one fails with
   * "conflict". Nothing is written when it fails.
   * @throws "permission_denied" (caller not the gateway, or not the quote's), "not_found" (no
   * such quote), "failed_precondition" (quote expired or used; no such transfer, paid to another
   * address or less than the fee; no wallet), "invalid" (bad fields, models other than quoted),
   * "unavailable" (wallet unreachable).
   */
  createSubnet(input: CreateSubnetInput, caller: string): Promise<SubnetMetadata>;
  /** A subnet by id (0 is the default subnet, which always exists), or undefined. */
  getSubnet(subnetId: bigint): Promise<SubnetMetadata | undefined>;
  /** One page of subnets matching every filter, by id. */
  listSubnets(request: SubnetPageRequest): Promise<SubnetPage>;
  /** Whether `address` runs a subnet that is not deprecated (it may then report node events). */
  isSubnetGateway(address: string): Promise<boolean>;
}

const MAX_MODELS = 256;
const MAX_MODEL_ID = 128;
const MAX_NAME = 64;
const MAX_ID = 128;
const CONFIG_HASH_BYTES = 32;
const TOTAL_BPS = 10_000;
const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 500;

type SubnetRow = Selectable<RegistrySubnetTable>;

/** Opens the subnet book over `options.store`. Holds no resources of its own. */
export function createSubnets<DB extends SubnetTables>(options: SubnetsOptions<DB>): Subnets {
  const store = options.store as unknown as Store<SubnetTables>;
  const clock = options.clock ?? (() => new Date());
  const baseFee = options.baseFee ?? DEFAULT_SUBNET_BASE_FEE;
  const feePerModel = options.feePerModel ?? DEFAULT_SUBNET_FEE_PER_MODEL;
  const quoteTtlMs = options.quoteTtlMs ?? DEFAULT_QUOTE_TTL_MS;
  const defaultGateway = options.defaultGatewayAddress ?? "";
  if (!isAddress(options.feeAddress)) {
    throw new RangeError("subnets: feeAddress must be a valid address");
  }
  const defaultSubnet = create(SubnetMetadataSchema, {
    protocolVersion: { ...REGISTRY_PROTOCOL_VERSION },
    subnetId: 0n,
    name: "default",
    gatewayAddress: defaultGateway,
    paymentSplit: { ...DEFAULT_PAYMENT_SPLIT },
    free: false,
    status: SubnetStatus.ACTIVE,
    networkFee: "0",
  });

  /** Checks with the wallet that the transfer paid the quote's fee; "failed_precondition" if not. */
  async function checkPayment(input: CreateSubnetInput, quote: QuoteRow): Promise<void> {
    if (options.payments === undefined) {
      throw new DirectoryError(
        "failed_precondition",
        "this registry has no wallet to check subnet fee payments with, so it cannot create subnets",
      );
    }
    const fee = fromMoney(quote.network_fee);
    const transfer = await options.payments.findTransfer({
      transferId: input.paymentTransferId,
      payer: input.gatewayAddress,
      referenceId: input.feeQuoteId,
    });
    if (transfer === undefined) {
      throw new DirectoryError(
        "failed_precondition",
        `the wallet has no transfer ${input.paymentTransferId} from ${input.gatewayAddress} with reference_id ${input.feeQuoteId}: pay the quoted fee ${fee} to ${quote.fee_address} with Transfer, reference_id = the fee quote id`,
      );
    }
    if (transfer.toAddress !== quote.fee_address) {
      throw new DirectoryError(
        "failed_precondition",
        `transfer ${input.paymentTransferId} paid ${transfer.toAddress}, not the quote's fee address ${quote.fee_address}`,
      );
    }
    if (transfer.amount < fee) {
      throw new DirectoryError(
        "failed_precondition",
        `transfer ${input.paymentTransferId} paid ${transfer.amount}, less than the quoted fee ${fee}`,
      );
    }
  }

  function matchesDefault(request: SubnetPageRequest): boolean {
    if (request.status && request.status !== SubnetStatus.ACTIVE) return false;
    if (request.gatewayAddress && request.gatewayAddress !== defaultGateway) return false;
    // The default subnet lists no models of its own.
    return !request.modelId;
  }

  return {
    async estimateFee(gatewayAddress, models, caller) {
      if (caller !== gatewayAddress) {
        throw new DirectoryError(
          "permission_denied",
          `the caller ${caller} may not ask for a quote for gateway ${gatewayAddress}`,
        );
      }
      checkModels(models);
      const now = clock().getTime();
      const fee = baseFee + feePerModel * BigInt(models.length);
      const quote = {
        quote_id: randomUUID(),
        gateway_address: gatewayAddress,
        network_fee: toMoney(fee),
        fee_address: options.feeAddress,
        models_digest: modelsDigest(models),
        created_at_ms: now,
        expires_at_ms: now + quoteTtlMs,
        used_by_subnet_id: null,
      };
      await store.db.insertInto("registry_fee_quote").values(quote).execute();
      return create(FeeQuoteSchema, {
        protocolVersion: { ...REGISTRY_PROTOCOL_VERSION },
        quoteId: quote.quote_id,
        gatewayAddress,
        networkFee: fee.toString(),
        feeAddress: options.feeAddress,
        expiresAt: timestampFromMs(quote.expires_at_ms),
      });
    },

    async createSubnet(input, caller) {
      if (caller !== input.gatewayAddress) {
        throw new DirectoryError(
          "permission_denied",
          `the caller ${caller} is not the subnet's gateway ${input.gatewayAddress}`,
        );
      }
      checkCreateInput(input);
      const split = input.paymentSplit ?? create(PaymentSplitSchema, DEFAULT_PAYMENT_SPLIT);
      const digest = modelsDigest(input.models);
      const requestDigest = toHex(
        sha3_256(
          new TextEncoder().encode(
            JSON.stringify([
              input.gatewayAddress,
              digest,
              input.feeQuoteId,
              input.paymentTransferId,
              toHex(input.configHash),
              input.name,
              [split.computeBps, split.gatewayBps, split.validatorBps, split.treasuryBps],
              input.free,
            ]),
          ),
        ),
      );
      // The wallet is asked outside the transaction; the checks it depends on run again inside.
      const earlier = await subnetPaidBy(store.db, input.paymentTransferId);
      if (earlier !== undefined) return subnetOf(sameRequestOrConflict(earlier, requestDigest));
      const quoted = await store.db
        .selectFrom("registry_fee_quote")
        .selectAll()
        .where("quote_id", "=", input.feeQuoteId)
        .executeTakeFirst();
      checkQuote(quoted, input, digest, clock().getTime());
      await checkPayment(input, quoted);

      const now = clock().getTime();
      const row = await transactionWithRaceRetry(store, async (trx) => {
        const existing = await subnetPaidBy(trx, input.paymentTransferId);
        if (existing !== undefined) return sameRequestOrConflict(existing, requestDigest);
        const quote = await store
          .forUpdate(
            trx
              .selectFrom("registry_fee_quote")
              .selectAll()
              .where("quote_id", "=", input.feeQuoteId),
          )
          .executeTakeFirst();
        checkQuote(quote, input, digest, now);
        // The counter row's lock serializes id allocation between replicas on PostgreSQL.
        const counter = await store
          .forUpdate(
            trx
              .selectFrom("registry_subnet_counter")
              .select("last_id")
              .where("name", "=", "subnet"),
          )
          .executeTakeFirstOrThrow();
        const subnetId = Number(counter.last_id) + 1;
        await trx
          .updateTable("registry_subnet_counter")
          .set({ last_id: subnetId })
          .where("name", "=", "subnet")
          .execute();
        const metadata = create(SubnetMetadataSchema, {
          subnetId: BigInt(subnetId),
          name: input.name,
          gatewayAddress: input.gatewayAddress,
          models: [...input.models],
          configHash: input.configHash,
          paymentSplit: split,
          free: input.free,
          networkFee: fromMoney(quote.network_fee).toString(),
          feeQuoteId: input.feeQuoteId,
          paymentTransferId: input.paymentTransferId,
          createdAt: timestampFromMs(now),
        });
        const fresh = {
          subnet_id: subnetId,
          gateway_address: input.gatewayAddress,
          status: SubnetStatus.PENDING,
          payment_transfer_id: input.paymentTransferId,
          fee_quote_id: input.feeQuoteId,
          request_digest: requestDigest,
          metadata: toBase64(toBinary(SubnetMetadataSchema, metadata)),
          created_at_ms: now,
          updated_at_ms: now,
        };
        const inserted = await trx
          .insertInto("registry_subnet")
          .values(fresh)
          .onConflict((conflict) => conflict.doNothing())
          .executeTakeFirst();
        if (inserted.numInsertedOrUpdatedRows !== 1n) throw new RaceLostError();
        await trx
          .updateTable("registry_fee_quote")
          .set({ used_by_subnet_id: subnetId })
          .where("quote_id", "=", input.feeQuoteId)
          .execute();
        const modelIds = [...new Set(input.models.map((model) => model.modelId))];
        if (modelIds.length > 0) {
          await trx
            .insertInto("registry_subnet_model")
            .values(modelIds.map((modelId) => ({ subnet_id: subnetId, model_id: modelId })))
            .execute();
        }
        return fresh;
      });
      return subnetOf(row);
    },

    async getSubnet(subnetId) {
      if (subnetId === 0n) return defaultSubnet;
      if (subnetId > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
      const row = await store.db
        .selectFrom("registry_subnet")
        .selectAll()
        .where("subnet_id", "=", Number(subnetId))
        .executeTakeFirst();
      return row === undefined ? undefined : subnetOf(row);
    },

    async listSubnets(request) {
      const filters = {
        status: request.status ?? SubnetStatus.UNSPECIFIED,
        gateway: request.gatewayAddress ?? "",
        model: request.modelId ?? "",
      };
      const after = decodePageToken(request.pageToken ?? "", filters);
      const afterId = after === undefined ? -1 : Number(after);
      if (!Number.isSafeInteger(afterId)) {
        throw new DirectoryError("invalid", "page_token is not a token this registry issued");
      }
      const pageSize = pageSizeOf(request.pageSize ?? 0, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
      const page: SubnetMetadata[] = [];
      if (afterId < 0 && matchesDefault(request)) page.push(defaultSubnet);
      let query = store.db
        .selectFrom("registry_subnet")
        .selectAll()
        .where("subnet_id", ">", Math.max(afterId, 0))
        .orderBy("subnet_id")
        .limit(pageSize - page.length + 1);
      if (filters.status) query = query.where("status", "=", filters.status);
      if (filters.gateway) query = query.where("gateway_address", "=", filters.gateway);
      if (filters.model) {
        const modelId = filters.model;
        query = query.where(({ exists, selectFrom }) =>
          exists(
            selectFrom("registry_subnet_model")
              .select("model_id")
              .whereRef("registry_subnet_model.subnet_id", "=", "registry_subnet.subnet_id")
              .where("registry_subnet_model.model_id", "=", modelId),
          ),
        );
      }
      const rows = await query.execute();
      const room = pageSize - page.length;
      page.push(...rows.slice(0, room).map(subnetOf));
      const last = page.at(-1);
      return {
        subnets: page,
        nextPageToken:
          rows.length > room && last !== undefined
            ? encodePageToken(filters, last.subnetId.toString())
            : "",
      };
    },

    async isSubnetGateway(address) {
      if (defaultGateway !== "" && address === defaultGateway) return true;
      const row = await store.db
        .selectFrom("registry_subnet")
        .select("subnet_id")
        .where("gateway_address", "=", address)
        .where("status", "!=", SubnetStatus.DEPRECATED)
        .limit(1)
        .executeTakeFirst();
      return row !== undefined;
    },
  };
}

type QuoteRow = Selectable<RegistryFeeQuoteTable>;

function subnetPaidBy(
  db: Kysely<SubnetTables> | Transaction<SubnetTables>,
  paymentTransferId: string,
): Promise<SubnetRow | undefined> {
  return db
    .selectFrom("registry_subnet")
    .selectAll()
    .where("payment_transfer_id", "=", paymentTransferId)
    .executeTakeFirst();
}

/** The subnet a retry of the same request created; "conflict" for another request. */
function sameRequestOrConflict(existing: SubnetRow, requestDigest: string): SubnetRow {
  if (existing.request_digest === requestDigest) return existing;
  throw new DirectoryError(
    "conflict",
    `payment transfer ${existing.payment_transfer_id} already paid for subnet ${existing.subnet_id}`,
  );
}

/** Asserts that `quote` exists and may pay for `input` at `nowMs`. */
function checkQuote(
  quote: QuoteRow | undefined,
  input: CreateSubnetInput,
  modelsDigestOfInput: string,
  nowMs: number,
): asserts quote is QuoteRow {
  if (quote === undefined) {
    throw new DirectoryError("not_found", `fee quote ${input.feeQuoteId} does not exist`);
  }
  if (quote.gateway_address !== input.gatewayAddress) {
    throw new DirectoryError(
      "permission_denied",
      `fee quote ${input.feeQuoteId} was made for another gateway`,
    );
  }
  if (quote.used_by_subnet_id !== null) {
    throw new DirectoryError(
      "failed_precondition",
      `fee quote ${input.feeQuoteId} was already used by subnet ${quote.used_by_subnet_id}`,
    );
  }
  if (Number(quote.expires_at_ms) <= nowMs) {
    throw new DirectoryError(
      "failed_precondition",
      `fee quote ${input.feeQuoteId} expired at ${new Date(Number(quote.expires_at_ms)).toISOString()}`,
    );
  }
  if (quote.models_digest !== modelsDigestOfInput) {
    throw new DirectoryError("invalid", "models are not the set the fee quote was made for");
  }
}

function subnetOf(row: SubnetRow): SubnetMetadata {
  const metadata = fromBinary(SubnetMetadataSchema, fromBase64(row.metadata));
  metadata.protocolVersion = create(ProtocolVersionSchema, REGISTRY_PROTOCOL_VERSION);
  metadata.status = row.status;
  metadata.updatedAt = timestampFromMs(Number(row.updated_at_ms));
  return metadata;
}

/** SHA3-256 hex of a model set, independent of order. */
function modelsDigest(models: readonly ModelDescriptor[]): string {
  const encoded = models
    .map((model) => toHex(toBinary(ModelDescriptorSchema, model)))
    .sort()
    .join(",");
  return toHex(sha3_256(new TextEncoder().encode(encoded)));
}

function checkModels(models: readonly ModelDescriptor[]): void {
  if (models.length === 0) {
    throw new DirectoryError("invalid", "a subnet serves at least one model");
  }
  if (models.length > MAX_MODELS) {
    throw new DirectoryError("invalid", `a subnet serves at most ${MAX_MODELS} models`);
  }
  const seen = new Set<string>();
  for (const model of models) {
    if (model.modelId.length === 0 || model.modelId.length > MAX_MODEL_ID) {
      throw new DirectoryError("invalid", `every model_id must be 1-${MAX_MODEL_ID} characters`);
    }
    if (seen.has(model.modelId)) {
      throw new DirectoryError("invalid", `model ${model.modelId} is listed twice`);
    }
    seen.add(model.modelId);
  }
}

function checkCreateInput(input: CreateSubnetInput): void {
  checkModels(input.models);
  if (input.name.length === 0 || [...input.name].length > MAX_NAME) {
    throw new DirectoryError("invalid", `name must be 1-${MAX_NAME} characters`);
  }
  if (input.configHash.length !== CONFIG_HASH_BYTES) {
    throw new DirectoryError("invalid", `config_hash must be ${CONFIG_HASH_BYTES} bytes`);
  }
  if (input.feeQuoteId.length === 0 || input.feeQuoteId.length > MAX_ID) {
    throw new DirectoryError("invalid", `fee_quote_id must be 1-${MAX_ID} characters`);
  }
  if (input.paymentTransferId.length === 0 || input.paymentTransferId.length > MAX_ID) {
    throw new DirectoryError("invalid", `payment_transfer_id must be 1-${MAX_ID} characters`);
  }
  const split = input.paymentSplit;
  if (split !== undefined) {
    const total = split.computeBps + split.gatewayBps + split.validatorBps + split.treasuryBps;
    if (total !== TOTAL_BPS) {
      throw new DirectoryError(
        "invalid",
        `payment_split shares must add up to ${TOTAL_BPS} basis points, got ${total}`,
      );
    }
  }
}
