/**
 * `tessera wallet ...`: balances, signed transfers, transaction history and escrows, talking to
 * the wallet service over gRPC. Amounts are decimal strings of integer base units end to end.
 */
import { randomUUID } from "node:crypto";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { TransactionKind } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import {
  FaucetResponseSchema,
  GetBalanceResponseSchema,
  GetEscrowResponseSchema,
  GetTransactionHistoryResponseSchema,
  type TransferResponse,
  TransferResponseSchema,
  WalletService,
} from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { type Command, Option } from "commander";
import type { CliContext } from "../cli-context.js";
import { CliError } from "../cli-error.js";
import { type CallSigner, withServiceClient } from "../clients.js";
import { CLI_PROTOCOL_VERSION } from "../protocol-version.js";
import { loadSigningKey } from "../signing-key.js";
import {
  formatBalance,
  formatEscrow,
  formatHistory,
  formatJson,
  formatTransfer,
} from "../wallet-format.js";
import {
  DEFAULT_WALLET_URL,
  MAX_HISTORY_LIMIT,
  parseAddress,
  parseAmount,
  parseClientId,
  parseKinds,
  parseLimit,
  resolveWalletAddress,
  resolveWalletUrl,
  TRANSACTION_KIND_NAMES,
} from "../wallet-options.js";

/** Options every wallet command takes. */
interface ConnectionOptions {
  readonly walletUrl?: string;
  readonly walletAddress?: string;
  readonly json?: boolean;
}

/** Options of the commands that may sign with a key. */
interface KeyOptions {
  readonly key?: string;
  readonly passwordStdin?: boolean;
}

interface TransferOptions extends ConnectionOptions, KeyOptions {
  readonly to: string;
  readonly amount: string;
  readonly id?: string;
  readonly memo?: string;
  readonly reference?: string;
}

interface HistoryOptions extends ConnectionOptions, KeyOptions {
  readonly kind?: TransactionKind[];
  readonly limit?: number;
  readonly pageToken?: string;
}

/** Where the commands find the wallet; shown under each command's --help. */
const CONNECTION_HELP = `
The wallet is at --wallet-url, else $TESSERA_WALLET_URL, else ${DEFAULT_WALLET_URL}.
Signed calls name the wallet server's address as their target: --wallet-address, else
$TESSERA_WALLET_ADDRESS, else the address in the wallet's key file <data dir>/wallet/key.json,
where <data dir> is $TESSERA_DATA_DIR, or the devnet's default <repo>/.tessera-data when that file
exists. The wallet shows a balance, history or escrow only to whom it concerns: pass --key to
sign the read. Keys are read from $TESSERA_HOME/keys (default ~/.tessera/keys); an encrypted key's
password is asked for on the terminal, or read from stdin with --password-stdin.
Errors print one line, "tessera: error: <code>: <message>", and exit 1.`;

/**
 * Codes after which a transfer may or may not have happened (or failed before being recorded):
 * resending it with the same id is then the safe way to find out.
 */
const RETRY_WITH_SAME_ID: ReadonlySet<Code> = new Set([
  Code.Canceled,
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.Internal,
  Code.Unavailable,
]);

/** Adds the `wallet` command group to `program`. */
export function registerWalletCommands(program: Command, context: CliContext): void {
  const wallet = program
    .command("wallet")
    .description("balances, transfers, transaction history and escrows")
    .addHelpText("after", CONNECTION_HELP);

  connection(
    wallet
      .command("balance")
      .description("print an address's balance: available, held in escrow, staked, total")
      .argument("[address]", "the address to read (default: the --key's address)"),
  )
    .addOption(
      new Option(
        "--key <name>",
        "sign the read with this key (the wallet shows a balance to its owner)",
      ).env("TESSERA_KEY"),
    )
    .option("--password-stdin", "read the key's password from stdin")
    .action(async (address: string | undefined, options: ConnectionOptions & KeyOptions) => {
      const reader = await readerOf(context, address, options);
      const balance = await readWallet(context, options, reader.signer, (client) =>
        client.getBalance({ protocolVersion: CLI_PROTOCOL_VERSION, address: reader.address }),
      );
      context.stdout.write(
        options.json ? formatJson(GetBalanceResponseSchema, balance) : formatBalance(balance),
      );
    });

  connection(
    wallet
      .command("transfer")
      .description("send base units from your key's address to another address (signed)")
      .addOption(
        new Option("--key <name>", "the paying key").env("TESSERA_KEY").makeOptionMandatory(),
      )
      .requiredOption("--to <address>", "the receiving address")
      .requiredOption("--amount <base units>", "how much, a whole number of base units"),
  )
    .option("--id <transfer id>", "client-chosen transfer id (default: a new UUID, printed)")
    .option("--memo <text>", "free text kept with the transfer (at most 256 characters)")
    .option("--reference <id>", "what the transfer pays for, e.g. a subnet fee quote id")
    .option("--password-stdin", "read the key's password from stdin")
    .addHelpText(
      "after",
      "\nThe transfer id makes the transfer happen at most once: if the outcome is unknown (timeout,\nconnection lost), run the same command again with --id <the printed id>.",
    )
    .action(async (options: TransferOptions) => {
      const to = parseAddress(options.to, "--to");
      const amount = parseAmount(options.amount);
      const transferId = options.id === undefined ? randomUUID() : parseClientId(options.id);
      const target = await resolveWalletAddress({
        option: options.walletAddress,
        env: context.env,
      });
      const keyPair = await loadSigningKey(context, options.key ?? "", options);
      let response: TransferResponse;
      try {
        response = await withServiceClient(
          WalletService,
          {
            baseUrl: resolveWalletUrl(options.walletUrl, context.env),
            signer: { keyPair, target },
          },
          (client) =>
            client.transfer({
              protocolVersion: CLI_PROTOCOL_VERSION,
              transferId,
              fromAddress: keyPair.address,
              toAddress: to,
              amount,
              referenceId: options.reference ?? "",
              memo: options.memo ?? "",
            }),
        );
      } catch (error) {
        if (!(error instanceof ConnectError) || !RETRY_WITH_SAME_ID.has(error.code)) throw error;
        throw new ConnectError(
          `${error.rawMessage} (transfer id ${transferId}: retry with --id ${transferId}, it cannot pay twice)`,
          error.code,
        );
      }
      if (options.json) {
        context.stdout.write(formatJson(TransferResponseSchema, response));
      } else if (response.transaction) {
        context.stdout.write(formatTransfer(response.transaction));
      } else {
        throw new CliError(
          `the wallet answered without the transaction (transfer id ${transferId})`,
        );
      }
    });

  connection(
    wallet
      .command("faucet")
      .description("development networks only: mint base units to your key's address (signed)")
      .addOption(
        new Option("--key <name>", "the key whose address receives the money")
          .env("TESSERA_KEY")
          .makeOptionMandatory(),
      )
      .requiredOption("--amount <base units>", "how much, a whole number of base units"),
  )
    .option("--id <faucet id>", "client-chosen id (default: a new UUID, printed)")
    .option("--password-stdin", "read the key's password from stdin")
    .addHelpText(
      "after",
      "\nThe wallet answers unimplemented unless it runs with FAUCET_ENABLED=true (pnpm start does).",
    )
    .action(async (options: TransferOptions) => {
      const amount = parseAmount(options.amount);
      const transferId = options.id === undefined ? randomUUID() : parseClientId(options.id);
      const target = await resolveWalletAddress({
        option: options.walletAddress,
        env: context.env,
      });
      const keyPair = await loadSigningKey(context, options.key ?? "", options);
      const response = await withServiceClient(
        WalletService,
        { baseUrl: resolveWalletUrl(options.walletUrl, context.env), signer: { keyPair, target } },
        (client) =>
          client.faucet({
            protocolVersion: CLI_PROTOCOL_VERSION,
            transferId,
            address: keyPair.address,
            amount,
          }),
      );
      if (options.json) {
        context.stdout.write(formatJson(FaucetResponseSchema, response));
      } else if (response.transaction) {
        context.stdout.write(formatTransfer(response.transaction));
      } else {
        throw new CliError(`the wallet answered without the transaction (faucet id ${transferId})`);
      }
    });

  connection(
    wallet
      .command("history")
      .description("list an address's ledger entries, newest first, one page at a time")
      .argument("[address]", "the address to list (default: the --key's address)"),
  )
    .addOption(
      new Option(
        "--key <name>",
        "sign the read with this key (the wallet lists an owner's entries)",
      ).env("TESSERA_KEY"),
    )
    .option("--password-stdin", "read the key's password from stdin")
    .option(
      "--kind <kinds>",
      `only these kinds, comma-separated or repeated: ${[...TRANSACTION_KIND_NAMES.keys()].join(", ")}`,
      parseKinds,
    )
    .option(
      "--limit <n>",
      `entries per page, 1-${MAX_HISTORY_LIMIT} (default: the wallet's, 100)`,
      parseLimit,
    )
    .option("--page-token <token>", "the next page token a previous page printed")
    .action(async (address: string | undefined, options: HistoryOptions) => {
      const reader = await readerOf(context, address, options);
      const page = await readWallet(context, options, reader.signer, (client) =>
        client.getTransactionHistory({
          protocolVersion: CLI_PROTOCOL_VERSION,
          address: reader.address,
          kinds: options.kind ?? [],
          pageSize: options.limit ?? 0,
          pageToken: options.pageToken ?? "",
        }),
      );
      context.stdout.write(
        options.json
          ? formatJson(GetTransactionHistoryResponseSchema, page)
          : formatHistory(reader.address, page),
      );
    });

  const escrow = wallet.command("escrow").description("inspect escrows");
  connection(
    escrow
      .command("show")
      .description("print an escrow: state, payer, arbiter, amounts, times and payment tree")
      .argument("<escrow-id>", "the escrow's id"),
  )
    .addOption(
      new Option("--key <name>", "sign the read with this key (its payer, arbiter or a payee)").env(
        "TESSERA_KEY",
      ),
    )
    .option("--password-stdin", "read the key's password from stdin")
    .action(async (escrowId: string, options: ConnectionOptions & KeyOptions) => {
      const id = parseClientId(escrowId, "the escrow id");
      const signer = options.key ? await signerOf(context, options.key, options) : undefined;
      const response = await readWallet(context, options, signer, (client) =>
        client.getEscrow({ protocolVersion: CLI_PROTOCOL_VERSION, escrowId: id }),
      );
      if (options.json) {
        context.stdout.write(formatJson(GetEscrowResponseSchema, response));
      } else if (response.escrow) {
        context.stdout.write(formatEscrow(response.escrow));
      } else {
        throw new CliError(`the wallet answered without the escrow ${JSON.stringify(id)}`);
      }
    });
}

/**
 * Runs one read against the wallet. The wallet shows balances, history and escrows only to
 * whoever they belong to, so an unsigned read it refuses as unauthenticated gets a hint to sign it.
 */
async function readWallet<T>(
  context: CliContext,
  options: ConnectionOptions,
  signer: CallSigner | undefined,
  call: (client: Client<typeof WalletService>) => Promise<T>,
): Promise<T> {
  try {
    return await withServiceClient(
      WalletService,
      { baseUrl: resolveWalletUrl(options.walletUrl, context.env), signer },
      call,
    );
  } catch (error) {
    if (signer || !(error instanceof ConnectError) || error.code !== Code.Unauthenticated) {
      throw error;
    }
    throw new ConnectError(`${error.rawMessage} (pass --key <name> to sign the read)`, error.code);
  }
}

/** Adds the options every wallet command takes. */
function connection(command: Command): Command {
  return command
    .option("--wallet-url <url>", "the wallet's URL (default: $TESSERA_WALLET_URL or the devnet's)")
    .option("--wallet-address <address>", "the wallet server's address, the target of signed calls")
    .option("--json", "print the wallet's response as JSON instead of text")
    .addHelpText("after", CONNECTION_HELP);
}

/**
 * Who reads and whose entries: with --key the read is signed and defaults to the key's address;
 * without, it is unsigned and needs an address.
 */
async function readerOf(
  context: CliContext,
  address: string | undefined,
  options: ConnectionOptions & KeyOptions,
): Promise<{ address: string; signer: CallSigner | undefined }> {
  const named = address === undefined ? undefined : parseAddress(address);
  if (!options.key) {
    if (named === undefined) throw new CliError("name an address, or pass --key <name>");
    return { address: named, signer: undefined };
  }
  const signer = await signerOf(context, options.key, options);
  return { address: named ?? signer.keyPair.address, signer };
}

/** The signer for --key: the wallet's address is resolved first, so a missing one fails before any password prompt. */
async function signerOf(
  context: CliContext,
  keyName: string,
  options: ConnectionOptions & KeyOptions,
): Promise<CallSigner> {
  const target = await resolveWalletAddress({ option: options.walletAddress, env: context.env });
  const keyPair = await loadSigningKey(context, keyName, options);
  return { keyPair, target };
}
