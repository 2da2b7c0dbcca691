/**
 * Where the ledger learns which validators' signatures release an escrow. The wallet's server
 * reads the registry's set (../validator-set.ts); tests use {@link createFixedValidatorSet}.
 */

/** The validators whose completion approvals count, and how many of them must sign. */
export interface ValidatorSetSnapshot {
  /** Addresses of the active validators (the N). */
  readonly addresses: readonly string[];
  /** M: distinct validator signatures a completion validation needs; at least 1. */
  readonly quorum: number;
}

/** A source of the current validator set. */
export interface ValidatorSetSource {
  /**
   * The current set. Rejects when it cannot be read; the ledger then refuses the release as
   * `unavailable` and nothing changes.
   */
  getValidatorSet(): Promise<ValidatorSetSnapshot>;
}

/** A source that always answers the given set (tests, single-node development networks). */
export function createFixedValidatorSet(snapshot: ValidatorSetSnapshot): ValidatorSetSource {
  const frozen: ValidatorSetSnapshot = Object.freeze({
    addresses: Object.freeze([...snapshot.addresses]),
    quorum: snapshot.quorum,
  });
  return { getValidatorSet: async () => frozen };
}
