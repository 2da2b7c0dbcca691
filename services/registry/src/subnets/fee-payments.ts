/**
 * What the subnet book needs from the wallet to check that a subnet's fee was paid: a look-up of
 * one signed transfer (WalletService GetTransactionHistory, read as a configured reader). The
 * domain states it; `wallet-client.ts` implements it over Connect, tests with a fake.
 */

/** A committed wallet transfer (a TRANSFER ledger entry). */
export interface FeeTransfer {
  /** The client-chosen transfer id (the entry's transaction id). */
  readonly transferId: string;
  /** The paying address (the entry's debit account). */
  readonly fromAddress: string;
  /** The receiving address (the entry's credit account). */
  readonly toAddress: string;
  /** Base units moved. */
  readonly amount: bigint;
  /** What the transfer pays for: the fee quote id, for a subnet fee. */
  readonly referenceId: string;
}

/** Which transfer to find. */
export interface FeeTransferQuery {
  readonly transferId: string;
  /** The address that must have paid it. */
  readonly payer: string;
  /** The reference id the transfer must carry (the fee quote id). */
  readonly referenceId: string;
}

/** The wallet's transfers, read by the registry. */
export interface FeePaymentLedger {
  /**
   * The TRANSFER with id `transferId`, paid by `payer` with reference id `referenceId`, or
   * undefined when the wallet has none.
   * @throws DirectoryError "unavailable" when the wallet cannot be reached or refuses the read.
   */
  findTransfer(query: FeeTransferQuery): Promise<FeeTransfer | undefined>;
}
