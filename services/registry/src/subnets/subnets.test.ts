import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { generateKeyPair } from "@tessera/identity/keys";
import { ModelDescriptorSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  PaymentSplitSchema,
  SubnetStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { describeEachStore, type StoreBackend } from "@tessera/store/testing";
import { DirectoryError, type DirectoryErrorKind } from "../directory/errors.js";
import {
  createFakeClock,
  createMemoryWallet,
  type FakeClock,
  type MemoryWallet,
  openRegistryStore,
} from "../directory/test-fixtures.js";
import type { FeeTransfer } from "./fee-payments.js";
import { type CreateSubnetInput, createSubnets, type Subnets } from "./subnets.js";

const MINUTE = 60_000;

async function rejectsWith(
  promise: Promise<unknown>,
  kind: DirectoryErrorKind,
  message?: RegExp,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof DirectoryError, `expected a DirectoryError, got ${String(error)}`);
    assert.equal(error.kind, kind, error.message);
    if (message !== undefined) assert.match(error.message, message);
    return true;
  });
}

const models = (...ids: string[]) =>
  ids.map((modelId) => create(ModelDescriptorSchema, { modelId, name: modelId, source: "onnx" }));

await describeEachStore("subnets", (backend: StoreBackend) => {
  let clock: FakeClock;
  let subnets: Subnets;
  let wallet: MemoryWallet;
  const treasury = generateKeyPair().address;
  const gateway = generateKeyPair().address;
  const otherGateway = generateKeyPair().address;
  let space = 0;

  beforeEach(async () => {
    clock = createFakeClock();
    space += 1;
    wallet = createMemoryWallet();
    subnets = createSubnets({
      payments: wallet,
      store: await openRegistryStore(backend, `s${space}`),
      clock: clock.now,
      feeAddress: treasury,
      baseFee: 1000n,
      feePerModel: 10n,
      quoteTtlMs: 15 * MINUTE,
    });
  });

  async function quoteAndCreate(fields: Partial<CreateSubnetInput> = {}, gatewayAddress = gateway) {
    const served = fields.models ?? models("resnet50");
    const quote = await subnets.estimateFee(gatewayAddress, served, gatewayAddress);
    const input: CreateSubnetInput = {
      gatewayAddress,
      models: served,
      feeQuoteId: quote.quoteId,
      paymentTransferId: `transfer-${quote.quoteId}`,
      configHash: new Uint8Array(32).fill(7),
      name: "vision",
      free: false,
      ...fields,
    };
    payFor(input, BigInt(quote.networkFee));
    return { quote, input, subnet: await subnets.createSubnet(input, gatewayAddress) };
  }

  /** The gateway pays `amount` to the treasury for the input's quote, as a wallet transfer. */
  function payFor(input: CreateSubnetInput, amount: bigint, fields: Partial<FeeTransfer> = {}) {
    wallet.pay({
      transferId: input.paymentTransferId,
      fromAddress: input.gatewayAddress,
      toAddress: treasury,
      amount,
      referenceId: input.feeQuoteId,
      ...fields,
    });
  }

  test("a subnet is created only against a wallet transfer of the quoted fee to the treasury", async () => {
    const served = models("m1");
    const quote = await subnets.estimateFee(gateway, served, gateway);
    const fee = BigInt(quote.networkFee);
    const input: CreateSubnetInput = {
      gatewayAddress: gateway,
      models: served,
      feeQuoteId: quote.quoteId,
      paymentTransferId: "pay-1",
      configHash: new Uint8Array(32),
      name: "n",
      free: false,
    };
    await rejectsWith(
      subnets.createSubnet(input, gateway),
      "failed_precondition",
      /no transfer pay-1/,
    );
    payFor({ ...input, paymentTransferId: "pay-other-quote" }, fee, { referenceId: "another" });
    await rejectsWith(
      subnets.createSubnet({ ...input, paymentTransferId: "pay-other-quote" }, gateway),
      "failed_precondition",
      /reference_id/,
    );
    payFor({ ...input, paymentTransferId: "pay-by-other" }, fee, { fromAddress: otherGateway });
    await rejectsWith(
      subnets.createSubnet({ ...input, paymentTransferId: "pay-by-other" }, gateway),
      "failed_precondition",
      /no transfer/,
    );
    payFor({ ...input, paymentTransferId: "pay-elsewhere" }, fee, { toAddress: otherGateway });
    await rejectsWith(
      subnets.createSubnet({ ...input, paymentTransferId: "pay-elsewhere" }, gateway),
      "failed_precondition",
      /not the quote's fee address/,
    );
    payFor({ ...input, paymentTransferId: "pay-short" }, fee - 1n);
    await rejectsWith(
      subnets.createSubnet({ ...input, paymentTransferId: "pay-short" }, gateway),
      "failed_precondition",
      new RegExp(`less than the quoted fee ${fee}`),
    );
    assert.equal(await subnets.getSubnet(1n), undefined, "nothing was written");

    payFor(input, fee + 5n);
    const subnet = await subnets.createSubnet(input, gateway);
    assert.equal(subnet.subnetId, 1n, "the refused attempts used no id and not the quote");
    assert.equal(subnet.paymentTransferId, "pay-1");

    const second = await subnets.estimateFee(gateway, served, gateway);
    await rejectsWith(
      subnets.createSubnet({ ...input, feeQuoteId: second.quoteId, name: "again" }, gateway),
      "conflict",
      /already paid for subnet 1/,
    );
    assert.equal(await subnets.getSubnet(2n), undefined, "one payment, one subnet");
  });

  test("without a wallet no subnet can be created", async () => {
    const book = createSubnets({
      store: await openRegistryStore(backend, `s${space}_nowallet`),
      clock: clock.now,
      feeAddress: treasury,
    });
    const quote = await book.estimateFee(gateway, models("m"), gateway);
    await rejectsWith(
      book.createSubnet(
        {
          gatewayAddress: gateway,
          models: models("m"),
          feeQuoteId: quote.quoteId,
          paymentTransferId: "pay",
          configHash: new Uint8Array(32),
          name: "n",
          free: true,
        },
        gateway,
      ),
      "failed_precondition",
      /no wallet/,
    );
    assert.equal(await book.getSubnet(1n), undefined);
  });

  test("the default subnet 0 always exists, active, with the 80/10/5/5 split", async () => {
    const subnet = await subnets.getSubnet(0n);
    assert.equal(subnet?.status, SubnetStatus.ACTIVE);
    assert.deepEqual(
      [
        subnet?.paymentSplit?.computeBps,
        subnet?.paymentSplit?.gatewayBps,
        subnet?.paymentSplit?.validatorBps,
        subnet?.paymentSplit?.treasuryBps,
      ],
      [8000, 1000, 500, 500],
    );
    assert.equal(await subnets.getSubnet(1n), undefined);
  });

  test("a fee quote grows with the models, binds for its lifetime, and only for its gateway", async () => {
    const quote = await subnets.estimateFee(gateway, models("a", "b", "c"), gateway);
    assert.equal(quote.networkFee, "1030");
    assert.equal(quote.feeAddress, treasury);
    assert.equal(quote.gatewayAddress, gateway);
    assert.equal(
      quote.expiresAt && timestampMs(quote.expiresAt),
      clock.now().getTime() + 15 * MINUTE,
    );
    assert.notEqual(quote.quoteId, "");
    await rejectsWith(subnets.estimateFee(gateway, models("a"), otherGateway), "permission_denied");
    await rejectsWith(subnets.estimateFee(gateway, [], gateway), "invalid", /at least one model/);
    await rejectsWith(subnets.estimateFee(gateway, models("a", "a"), gateway), "invalid", /twice/);
  });

  test("creates a pending subnet against a paid quote, idempotent on the payment transfer", async () => {
    const { quote, input, subnet } = await quoteAndCreate();
    assert.equal(subnet.subnetId, 1n);
    assert.equal(subnet.status, SubnetStatus.PENDING);
    assert.equal(subnet.networkFee, quote.networkFee);
    assert.equal(subnet.feeQuoteId, quote.quoteId);
    assert.equal(subnet.paymentTransferId, input.paymentTransferId);
    assert.equal(subnet.paymentSplit?.computeBps, 8000, "the default split when none is given");
    assert.deepEqual(await subnets.getSubnet(1n), subnet);

    assert.deepEqual(await subnets.createSubnet(input, gateway), subnet, "the same request again");
    await rejectsWith(
      subnets.createSubnet({ ...input, name: "other" }, gateway),
      "conflict",
      /already paid for subnet 1/,
    );
    await rejectsWith(
      subnets.createSubnet({ ...input, paymentTransferId: "another-transfer" }, gateway),
      "failed_precondition",
      /already used/,
    );
    assert.equal(await subnets.isSubnetGateway(gateway), true);
    assert.equal(await subnets.isSubnetGateway(otherGateway), false);
  });

  test("refuses expired, unknown and foreign quotes, other models, and bad fields", async () => {
    const served = models("m1");
    const quote = await subnets.estimateFee(gateway, served, gateway);
    const input: CreateSubnetInput = {
      gatewayAddress: gateway,
      models: served,
      feeQuoteId: quote.quoteId,
      paymentTransferId: "t-1",
      configHash: new Uint8Array(32),
      name: "n",
      free: true,
    };
    await rejectsWith(subnets.createSubnet(input, otherGateway), "permission_denied");
    await rejectsWith(
      subnets.createSubnet({ ...input, feeQuoteId: "no-such-quote" }, gateway),
      "not_found",
    );
    await rejectsWith(
      subnets.createSubnet({ ...input, models: models("m2") }, gateway),
      "invalid",
      /not the set/,
    );
    await rejectsWith(
      subnets.createSubnet({ ...input, configHash: new Uint8Array(3) }, gateway),
      "invalid",
      /config_hash/,
    );
    await rejectsWith(
      subnets.createSubnet({ ...input, name: "x".repeat(65) }, gateway),
      "invalid",
      /name/,
    );
    await rejectsWith(
      subnets.createSubnet(
        {
          ...input,
          paymentSplit: create(PaymentSplitSchema, {
            computeBps: 9000,
            gatewayBps: 1000,
            validatorBps: 500,
            treasuryBps: 500,
          }),
        },
        gateway,
      ),
      "invalid",
      /10000/,
    );
    const foreign = await subnets.estimateFee(otherGateway, served, otherGateway);
    await rejectsWith(
      subnets.createSubnet({ ...input, feeQuoteId: foreign.quoteId }, gateway),
      "permission_denied",
      /another gateway/,
    );
    clock.advance(15 * MINUTE);
    await rejectsWith(subnets.createSubnet(input, gateway), "failed_precondition", /expired/);
    assert.equal(await subnets.getSubnet(1n), undefined, "nothing was created");
  });

  test("lists subnets by page, with status, gateway and model filters", async () => {
    const split = create(PaymentSplitSchema, {
      computeBps: 7000,
      gatewayBps: 2000,
      validatorBps: 500,
      treasuryBps: 500,
    });
    await quoteAndCreate({ models: models("a") });
    await quoteAndCreate({ models: models("b"), paymentSplit: split });
    await quoteAndCreate({ models: models("a", "c") }, otherGateway);

    const ids = (page: { subnets: { subnetId: bigint }[] }) =>
      page.subnets.map((subnet) => subnet.subnetId);
    const first = await subnets.listSubnets({ pageSize: 2 });
    assert.deepEqual(ids(first), [0n, 1n]);
    const second = await subnets.listSubnets({ pageSize: 2, pageToken: first.nextPageToken });
    assert.deepEqual(ids(second), [2n, 3n]);
    assert.equal(second.nextPageToken, "");
    assert.equal(second.subnets[0]?.paymentSplit?.computeBps, 7000);

    assert.deepEqual(ids(await subnets.listSubnets({ status: SubnetStatus.PENDING })), [
      1n,
      2n,
      3n,
    ]);
    assert.deepEqual(ids(await subnets.listSubnets({ status: SubnetStatus.ACTIVE })), [0n]);
    assert.deepEqual(ids(await subnets.listSubnets({ gatewayAddress: otherGateway })), [3n]);
    assert.deepEqual(ids(await subnets.listSubnets({ modelId: "a" })), [1n, 3n]);
    const byModel = await subnets.listSubnets({ modelId: "a", pageSize: 1 });
    assert.deepEqual(ids(byModel), [1n]);
    assert.deepEqual(
      ids(
        await subnets.listSubnets({ modelId: "a", pageSize: 1, pageToken: byModel.nextPageToken }),
      ),
      [3n],
    );
    await rejectsWith(
      subnets.listSubnets({ modelId: "b", pageToken: byModel.nextPageToken }),
      "invalid",
      /other filters/,
    );
    await rejectsWith(subnets.listSubnets({ pageToken: "garbage!" }), "invalid");
  });

  test("concurrent creations get distinct ids", async () => {
    const quotes = await Promise.all(
      Array.from({ length: 6 }, () => subnets.estimateFee(gateway, models("x"), gateway)),
    );
    const inputs = quotes.map(
      (quote, i): CreateSubnetInput => ({
        gatewayAddress: gateway,
        models: models("x"),
        feeQuoteId: quote.quoteId,
        paymentTransferId: `t${i}`,
        configHash: new Uint8Array(32),
        name: `s${i}`,
        free: false,
      }),
    );
    for (const [i, input] of inputs.entries()) payFor(input, BigInt(quotes[i]?.networkFee ?? 0));
    const created = await Promise.all(inputs.map((input) => subnets.createSubnet(input, gateway)));
    assert.deepEqual(
      created.map((subnet) => subnet.subnetId).sort((a, b) => Number(a - b)),
      [1n, 2n, 3n, 4n, 5n, 6n],
    );
  });
});

test("a subnet book needs a valid fee address", () => {
  assert.throws(
    () => createSubnets({ store: undefined as never, feeAddress: "not-an-address" }),
    /feeAddress/,
  );
});
