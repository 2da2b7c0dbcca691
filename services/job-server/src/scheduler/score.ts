/**
 * How eligible nodes are ranked. Every term is in [0, 1] and the score is their weighted sum:
 *
 *   score = w.reputation * reputation
 *         + w.freeCapacity * (freeSlots / maxConcurrentJobs + freeMemory / offeredMemory) / 2
 *         + w.uptime * uptimeRatio
 *         + w.price * referencePrice / (referencePrice + pricePerHour)
 *
 * `freeMemory / offeredMemory` is taken in the pool the job uses (RAM for host jobs, the summed
 * memory of the node's devices of the required kind for device jobs), after the scheduler's own
 * reservations. The price term is 1 for a free node, 0.5 at the reference price and falls towards
 * 0 for dearer nodes. The score does not depend on the job, so the index keeps nodes ordered by it.
 */

/** The weights of the four terms; they need not add up to 1. */
export interface ScoreWeights {
  /** Weight of the node's reputation. */
  readonly reputation: number;
  /** Weight of the node's free capacity (slots and memory). */
  readonly freeCapacity: number;
  /** Weight of the node's uptime ratio. */
  readonly uptime: number;
  /** Weight of the node's cheapness. */
  readonly price: number;
}

/** Default weights: reputation 0.4, free capacity 0.25, uptime 0.2, price 0.15. */
export const DEFAULT_SCORE_WEIGHTS: ScoreWeights = Object.freeze({
  reputation: 0.4,
  freeCapacity: 0.25,
  uptime: 0.2,
  price: 0.15,
});

/** Default reference price: a node asking 1,000,000 base units per hour scores 0.5 on price. */
export const DEFAULT_REFERENCE_PRICE_PER_HOUR = 1_000_000n;

/** The inputs of one node's score; fractions and ratios in [0, 1], prices as plain numbers. */
export interface ScoreInputs {
  readonly reputation: number;
  readonly uptimeRatio: number;
  readonly freeSlotFraction: number;
  readonly freeMemoryFraction: number;
  readonly pricePerHour: number;
}

/** The price term: referencePrice / (referencePrice + price); 1 for a free node. */
export function priceTerm(pricePerHour: number, referencePricePerHour: number): number {
  if (pricePerHour <= 0) return 1;
  return referencePricePerHour / (referencePricePerHour + pricePerHour);
}

/** The score of a node (see the formula above). */
export function nodeScore(
  weights: ScoreWeights,
  referencePricePerHour: number,
  inputs: ScoreInputs,
): number {
  return (
    weights.reputation * inputs.reputation +
    weights.freeCapacity * ((inputs.freeSlotFraction + inputs.freeMemoryFraction) / 2) +
    weights.uptime * inputs.uptimeRatio +
    weights.price * priceTerm(inputs.pricePerHour, referencePricePerHour)
  );
}
