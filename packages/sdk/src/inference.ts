/**
 * Running one inference task through a gateway, the whole way: submit it, and on a paid subnet
 * fund an escrow with the validators' approved price (the gateway as arbiter) and confirm the
 * payment, then follow the task until it ends. The escrow id is derived from the payer and the
 * request id, so running the same request again finds the escrow instead of paying twice.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { TensorSpec } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type InferenceResult,
  InferenceTaskState,
  type InferenceTaskStatus,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import type { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { ensureJobEscrow, escrowIdFor } from "./escrow.js";
import type { GatewayClient } from "./gateway-client.js";
import { SDK_PROTOCOL_VERSION } from "./protocol-version.js";
import { callOptions } from "./service-client.js";

/** How long an escrow outlives its task's deadline, so the gateway can still release it. */
const ESCROW_MARGIN_MS = 10 * 60_000;

/** The task's input payload. */
export interface InferenceInput {
  readonly bytes: Uint8Array;
  /** `application/json` or `application/vnd.tessera.raw-tensors` (with `tensors`). */
  readonly mediaType: string;
  /** For raw tensors: the tensors packed in `bytes`, in order, with concrete shapes. */
  readonly tensors?: readonly TensorSpec[] | undefined;
}

/** Options of {@link runInference}. */
export interface RunInferenceOptions {
  readonly gateway: GatewayClient;
  /** The wallet, signed by the same key; needed on a paid subnet. */
  readonly wallet?: Client<typeof WalletService> | undefined;
  /** Client-chosen request id (idempotent); default a random one. */
  readonly requestId?: string | undefined;
  readonly modelId: string;
  readonly input: InferenceInput;
  readonly subnetId?: bigint | undefined;
  /** Most the caller pays, base units; undefined for no limit. */
  readonly maxPrice?: bigint | undefined;
  /** Time the task may take, ms; 0 or undefined for the gateway's default. */
  readonly timeoutMs?: number | undefined;
  /** Called with every status the task reports, in order. */
  readonly onStatus?: ((status: InferenceTaskStatus) => void) | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** A task that ended without a result. */
export class InferenceFailedError extends Error {
  constructor(readonly status: InferenceTaskStatus) {
    super(
      `task ${status.requestId} ended ${InferenceTaskState[status.state] ?? status.state}${status.errorMessage === "" ? "" : `: ${status.errorMessage}`}`,
    );
    this.name = "InferenceFailedError";
  }
}

/** A task paid for on a paid subnet, with no wallet to pay from. */
export class PaymentNeededError extends Error {
  constructor(readonly status: InferenceTaskStatus) {
    super(
      `task ${status.requestId} needs a payment of ${status.paymentStatus?.amountDue ?? "?"} base units, and no wallet was given`,
    );
    this.name = "PaymentNeededError";
  }
}

const TERMINAL = new Set([
  InferenceTaskState.COMPLETED,
  InferenceTaskState.FAILED,
  InferenceTaskState.CANCELLED,
  InferenceTaskState.EXPIRED,
]);

/**
 * Runs one task and resolves with its final status and validated result.
 * @throws InferenceFailedError when it ends FAILED, CANCELLED or EXPIRED; PaymentNeededError on a
 * paid subnet without a wallet; the services' ConnectErrors (e.g. invalid_argument for bad input).
 */
export async function runInference(
  options: RunInferenceOptions,
): Promise<{ status: InferenceTaskStatus; result: InferenceResult }> {
  const { gateway, signal } = options;
  const requestId = options.requestId ?? `infer-${crypto.randomUUID()}`;
  const submitted = await gateway.tasks.submitInferenceTask(
    {
      protocolVersion: SDK_PROTOCOL_VERSION,
      requestId,
      modelId: options.modelId,
      input: options.input.bytes,
      inputMediaType: options.input.mediaType,
      inputTensors: [...(options.input.tensors ?? [])],
      clientAddress: gateway.callerAddress,
      subnetId: options.subnetId ?? 0n,
      maxPrice: options.maxPrice === undefined ? "" : options.maxPrice.toString(),
      timeoutMs: BigInt(options.timeoutMs ?? 0),
    },
    callOptions(signal),
  );
  let status = submitted.status;
  if (status === undefined) throw new Error("the gateway answered without a status");
  options.onStatus?.(status);
  if (status.state === InferenceTaskState.AWAITING_PAYMENT) {
    status = await pay(options, status, requestId);
    options.onStatus?.(status);
  }
  return follow(options, requestId, status);
}

async function pay(
  options: RunInferenceOptions,
  status: InferenceTaskStatus,
  requestId: string,
): Promise<InferenceTaskStatus> {
  const { gateway, wallet, signal } = options;
  const payment = status.paymentStatus;
  if (wallet === undefined) throw new PaymentNeededError(status);
  const amount = BigInt(payment?.amountDue || "0");
  const deadlineMs = status.deadline === undefined ? Date.now() : timestampMs(status.deadline);
  const escrowId = escrowIdFor(gateway.callerAddress, requestId);
  const { escrow } = await ensureJobEscrow(
    wallet,
    {
      escrowId,
      jobId: requestId,
      payerAddress: gateway.callerAddress,
      amount,
      arbiterAddress: payment?.escrowArbiterAddress || gateway.address,
      expiresInMs: Math.max(0, deadlineMs - Date.now()) + ESCROW_MARGIN_MS,
    },
    callOptions(signal),
  );
  const confirmed = await gateway.tasks.confirmPayment(
    {
      protocolVersion: SDK_PROTOCOL_VERSION,
      confirmation: {
        requestId,
        escrowId,
        payerAddress: gateway.callerAddress,
        amount: escrow.amount,
        ...(escrow.createdAt === undefined ? {} : { fundedAt: escrow.createdAt }),
      },
    },
    callOptions(signal),
  );
  if (confirmed.status === undefined) throw new Error("the gateway answered without a status");
  return confirmed.status;
}

async function follow(
  options: RunInferenceOptions,
  requestId: string,
  current: InferenceTaskStatus,
): Promise<{ status: InferenceTaskStatus; result: InferenceResult }> {
  const { gateway, signal } = options;
  let status = current;
  let result: InferenceResult | undefined;
  // A subscription ends at the server's deadline for calls (30 s by default) even while the task
  // runs; each new one starts with the current status, so following again loses nothing.
  while (!TERMINAL.has(status.state)) {
    signal?.throwIfAborted();
    const updates = gateway.tasks.subscribeToTaskUpdates(
      { protocolVersion: SDK_PROTOCOL_VERSION, requestId },
      callOptions(signal, 0),
    );
    try {
      for await (const update of updates) {
        if (update.status === undefined) continue;
        if (update.status.state !== status.state || update.result !== undefined) {
          options.onStatus?.(update.status);
        }
        status = update.status;
        result = update.result ?? result;
        if (TERMINAL.has(status.state)) break;
      }
    } catch (error) {
      if (ConnectError.from(error).code !== Code.DeadlineExceeded) throw error;
    }
  }
  if (status.state === InferenceTaskState.COMPLETED && result === undefined) {
    result = (
      await gateway.tasks.getTaskStatus(
        { protocolVersion: SDK_PROTOCOL_VERSION, requestId },
        callOptions(signal),
      )
    ).result;
  }
  if (status.state !== InferenceTaskState.COMPLETED || result === undefined) {
    throw new InferenceFailedError(status);
  }
  return { status, result };
}
