/**
 * `tessera infer <model> <input>` runs one inference task through the gateway (paying for it on a
 * paid subnet: escrow funded with the validators' approved price, payment confirmed) and prints
 * the model's outputs as JSON; `tessera models` lists the models the gateway serves.
 */
import { readFile } from "node:fs/promises";
import { create, toJson } from "@bufbuild/protobuf";
import type { KeyPair } from "@tessera/identity/keys";
import { tensorsToJson, unpackRawTensors } from "@tessera/ml/tensors";
import { ListModelsResponseSchema } from "@tessera/proto/tessera/gateway/v1/gateway_client_service_pb.js";
import {
  InferenceResultSchema,
  InferenceTaskState,
  type InferenceTaskStatus,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { type GatewayClient, openGatewayClient } from "@tessera/sdk/gateway-client";
import { InferenceFailedError, PaymentNeededError, runInference } from "@tessera/sdk/inference";
import { SDK_PROTOCOL_VERSION } from "@tessera/sdk/protocol-version";
import { openServiceClient } from "@tessera/sdk/service-client";
import type { Command } from "commander";
import type { CliContext } from "../cli-context.js";
import { CliError } from "../cli-error.js";
import { parseJobId, resolveKeyName } from "../job-options.js";
import { resolveServiceAddress } from "../service-address.js";
import { loadSigningKey } from "../signing-key.js";
import { resolveWalletAddress, resolveWalletUrl } from "../wallet-options.js";

/** The devnet's gateway. */
export const DEFAULT_GATEWAY_URL = "http://127.0.0.1:7002";

interface GatewayOptions {
  readonly key?: string;
  readonly passwordStdin?: boolean;
  readonly gatewayUrl?: string;
  readonly gatewayAddress?: string;
  readonly json?: boolean;
}

interface InferOptions extends GatewayOptions {
  readonly requestId?: string;
  readonly maxPrice?: string;
  readonly subnet?: string;
  readonly timeoutMs?: string;
  readonly walletUrl?: string;
  readonly walletAddress?: string;
}

interface ModelsOptions extends GatewayOptions {
  readonly category?: string;
  readonly available?: boolean;
}

const GATEWAY_HELP = `
The gateway is at --gateway-url, else $TESSERA_GATEWAY_URL, else ${DEFAULT_GATEWAY_URL}. Calls are
signed for its address: --gateway-address, else $TESSERA_GATEWAY_ADDRESS, else the address in its
key file <data dir>/gateway/key.json (the devnet's). Every call is signed with --key <name>
(default $TESSERA_KEY).`;

function gatewayOptions(command: Command): Command {
  return command
    .option("--key <name>", "the key that signs (default: $TESSERA_KEY)")
    .option("--password-stdin", "read the key's password from stdin")
    .option(
      "--gateway-url <url>",
      "the gateway's URL (default: $TESSERA_GATEWAY_URL or the devnet's)",
    )
    .option("--gateway-address <address>", "the gateway's address, the target of signed calls")
    .option("--json", "print JSON instead of text")
    .addHelpText("after", GATEWAY_HELP);
}

/** Runs `use` with a signed gateway client; closes it however `use` ends. */
async function withGateway<T>(
  context: CliContext,
  options: GatewayOptions,
  use: (gateway: GatewayClient, keyPair: KeyPair) => Promise<T>,
): Promise<T> {
  const baseUrl = options.gatewayUrl || context.env.TESSERA_GATEWAY_URL || DEFAULT_GATEWAY_URL;
  const address = await resolveServiceAddress(
    {
      dataFolder: "gateway",
      label: "gateway",
      option: "--gateway-address",
      variable: "TESSERA_GATEWAY_ADDRESS",
    },
    { option: options.gatewayAddress, env: context.env },
  );
  const keyPair = await loadSigningKey(context, resolveKeyName(options.key, context.env), options);
  const gateway = openGatewayClient({ baseUrl, address, keyPair });
  try {
    return await use(gateway, keyPair);
  } finally {
    gateway.close();
  }
}

/**
 * The task's input: a file holding JSON (`{"<input>": [[…]]}`, or a bare nested array for a
 * one-input model), or the JSON itself when the argument starts with `[` or `{`.
 */
async function readInput(argument: string): Promise<Uint8Array> {
  const text = /^\s*[[{]/.test(argument)
    ? argument
    : await readFile(argument, "utf8").catch((error: NodeJS.ErrnoException) => {
        throw new CliError(`cannot read input file ${argument}: ${error.code ?? error.message}`);
      });
  try {
    JSON.parse(text);
  } catch (error) {
    throw new CliError(`the input is not JSON: ${(error as Error).message}`);
  }
  return new TextEncoder().encode(text);
}

function parseUnsigned(text: string | undefined, flag: string): bigint | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,30}$/.test(text)) throw new CliError(`${flag} must be a whole number, got ${text}`);
  return BigInt(text);
}

function describeStatus(status: InferenceTaskStatus): string {
  const state = InferenceTaskState[status.state] ?? String(status.state);
  const payment = status.paymentStatus;
  if (status.state === InferenceTaskState.AWAITING_PAYMENT && payment !== undefined) {
    return `task ${status.requestId}: ${state} (price ${payment.amountDue}, arbiter ${payment.escrowArbiterAddress})\n`;
  }
  const node = status.assignedComputeNodeAddress;
  return `task ${status.requestId}: ${state}${node === "" ? "" : ` on ${node}`}\n`;
}

/** Adds `infer` and `models` to `program`. */
export function registerInferCommands(program: Command, context: CliContext): void {
  gatewayOptions(
    program
      .command("infer")
      .description("run a model hosted by the gateway's subnet on an input and print its outputs")
      .argument("<model>", "the model id (see `tessera models`)")
      .argument("<input>", 'a JSON file, or inline JSON: {"input": [[1, 2]]} or [[1, 2]]'),
  )
    .option("--request-id <id>", "the task's id (default: a new one); the same id is idempotent")
    .option("--max-price <units>", "refuse a price above this many base units")
    .option("--subnet <id>", "the subnet (default 0)")
    .option("--timeout-ms <ms>", "time the task may take (default: the gateway's, 60000)")
    .option("--wallet-url <url>", "the wallet's URL, for a paid subnet")
    .option("--wallet-address <address>", "the wallet server's address, for a paid subnet")
    .addHelpText(
      "after",
      '\nOn a paid subnet the validators approve a route and price first; the command then funds an\nescrow with that price (the gateway as arbiter) and confirms it, and the wallet pays the node,\ngateway, validators and treasury only once the validators approve the result. Progress goes to\nstderr, the outputs to stdout as JSON ({"<output>": [[…]]}; with --json, the whole result).',
    )
    .action(async (model: string, inputArgument: string, options: InferOptions) => {
      const bytes = await readInput(inputArgument);
      const requestId =
        options.requestId === undefined ? undefined : parseJobId(options.requestId, "--request-id");
      const maxPrice = parseUnsigned(options.maxPrice, "--max-price");
      const subnetId = parseUnsigned(options.subnet, "--subnet");
      const timeoutMs = parseUnsigned(options.timeoutMs, "--timeout-ms");
      // A free subnet needs no wallet; without one, a paid task stops with PaymentNeededError.
      const walletTarget = await resolveWalletAddress({
        option: options.walletAddress,
        env: context.env,
      }).catch((error: unknown) => {
        if (options.walletAddress !== undefined) throw error;
        return undefined;
      });
      await withGateway(context, options, async (gateway, keyPair) => {
        const wallet =
          walletTarget === undefined
            ? undefined
            : openServiceClient(WalletService, {
                baseUrl: resolveWalletUrl(options.walletUrl, context.env),
                signer: { keyPair, target: walletTarget },
              });
        try {
          const { result } = await runInference({
            gateway,
            wallet: wallet?.client,
            requestId,
            modelId: model,
            input: { bytes, mediaType: "application/json" },
            subnetId,
            maxPrice,
            timeoutMs: timeoutMs === undefined ? undefined : Number(timeoutMs),
            onStatus: (status) => context.stderr.write(describeStatus(status)),
          });
          if (options.json) {
            context.stdout.write(`${JSON.stringify(toJson(InferenceResultSchema, result))}\n`);
            return;
          }
          const outputs = tensorsToJson(unpackRawTensors(result.output, result.outputTensors));
          context.stdout.write(`${JSON.stringify(outputs)}\n`);
        } catch (error) {
          if (error instanceof PaymentNeededError) {
            throw new CliError(
              `${error.message}: the wallet's address was not found (--wallet-address, $TESSERA_WALLET_ADDRESS, or the devnet's key file)`,
            );
          }
          if (error instanceof InferenceFailedError) throw new CliError(error.message);
          throw error;
        } finally {
          wallet?.close();
        }
      });
    });

  gatewayOptions(
    program.command("models").description("list the models the gateway serves, with their formats"),
  )
    .option("--category <name>", "only models of this category (tabular, vision, text, ...)")
    .option("--available", "only models with an online compute node")
    .action(async (options: ModelsOptions) => {
      await withGateway(context, options, async (gateway) => {
        const models = [];
        let pageToken = "";
        do {
          const page = await gateway.tasks.listModels({
            protocolVersion: SDK_PROTOCOL_VERSION,
            category: options.category ?? "",
            availableOnly: options.available === true,
            pageSize: 100,
            pageToken,
          });
          models.push(...page.models);
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
        if (options.json) {
          context.stdout.write(
            `${JSON.stringify(toJson(ListModelsResponseSchema, create(ListModelsResponseSchema, { models })))}\n`,
          );
          return;
        }
        if (models.length === 0) {
          context.stdout.write("no models (is a compute node hosting one online?)\n");
          return;
        }
        for (const entry of models) {
          const d = entry.descriptor;
          const specs = (
            list: readonly { name: string; dtype: string; shape: readonly bigint[] }[] | undefined,
          ) => (list ?? []).map((s) => `${s.name} ${s.dtype}[${s.shape.join(",")}]`).join(", ");
          context.stdout.write(
            `${d?.modelId ?? "?"}  ${d?.name ?? ""} v${d?.version ?? ""} (${d?.category ?? ""})\n` +
              `  in: ${specs(d?.inputs)}  out: ${specs(d?.outputs)}\n` +
              `  subnet ${entry.subnetId}, ${entry.onlineNodeCount} node(s) online, ${entry.paymentRequired ? `paid${entry.indicativePrice === "" ? "" : ` ~${entry.indicativePrice}`}` : "free"}${d?.supportsBackward ? ", backward" : ""}\n`,
          );
        }
      });
    });
}
