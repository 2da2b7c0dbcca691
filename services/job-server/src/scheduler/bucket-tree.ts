/**
 * The index of one bucket (one memory pool x one runtime): tournament trees over the bucket's
 * members, in two layers.
 *
 * - `now`: what each member can take at this moment. A leaf holds the member's score and the
 *   facts a job filters on (free memory, price, reputation, direct reachability); each inner node
 *   holds the best of its subtree (max score, max free memory, min price, max reputation, any
 *   reachable). A member that cannot take a job now (offline, banned, no free slot) has an
 *   inactive leaf that every query skips. Changes with every reservation.
 * - `idle`: what each online, unbanned member could take with nothing reserved (memory = the
 *   largest it offers). Changes only when the node's description or status changes; it tells a
 *   busy cluster from one where no node could ever run the job, without a pass over the nodes.
 *
 * `search` visits subtrees best key first and skips those where no member can pass the job's
 * filters, so the first leaf that passes is the best eligible member: O(log n) per update and,
 * when most members qualify, about O(log n) per query. The bounds are per field, so a subtree may
 * look viable when no single member is; `accept` has the last word on each leaf.
 */

/** The filters of one query; members failing any of them are skipped. */
export interface BucketQuery {
  /** Memory needed, bytes. */
  readonly need: number;
  /** Highest price accepted, as a number (rounded like the leaves' prices; `accept` checks exactly). */
  readonly maxPrice: number;
  /** Lowest reputation accepted. */
  readonly minReputation: number;
  /** Only directly reachable members. */
  readonly direct: boolean;
}

let heapKeys = new Float64Array(64);
let heapIds = new Int32Array(64);
// Depth-first stack of `exists`: at most one pending sibling per level (trees stay far below 2^64).
const stack = new Int32Array(128);

/** One layer: a tournament tree of (key, memory, price, reputation, direct) over the leaves. */
class Layer {
  key: Float64Array;
  memory: Float64Array;
  price: Float64Array;
  reputation: Float64Array;
  direct: Uint8Array;

  constructor(readonly leaves: number) {
    this.key = new Float64Array(2 * leaves).fill(Number.NEGATIVE_INFINITY);
    this.memory = new Float64Array(2 * leaves).fill(-1);
    this.price = new Float64Array(2 * leaves).fill(Number.POSITIVE_INFINITY);
    this.reputation = new Float64Array(2 * leaves).fill(-1);
    this.direct = new Uint8Array(2 * leaves);
  }

  /** A layer with twice the leaves holding the same leaf values. */
  grown(): Layer {
    const old = this.leaves;
    const next = new Layer(old * 2);
    next.key.set(this.key.subarray(old, 2 * old), 2 * old);
    next.memory.set(this.memory.subarray(old, 2 * old), 2 * old);
    next.price.set(this.price.subarray(old, 2 * old), 2 * old);
    next.reputation.set(this.reputation.subarray(old, 2 * old), 2 * old);
    next.direct.set(this.direct.subarray(old, 2 * old), 2 * old);
    for (let index = 2 * old - 1; index >= 1; index--) next.recompute(index);
    return next;
  }

  set(
    slot: number,
    key: number,
    memory: number,
    price: number,
    reputation: number,
    direct: boolean,
  ): void {
    const leaf = this.leaves + slot;
    this.key[leaf] = key;
    this.memory[leaf] = memory;
    this.price[leaf] = price;
    this.reputation[leaf] = reputation;
    this.direct[leaf] = direct ? 1 : 0;
    for (let index = leaf >> 1; index >= 1; index >>= 1) {
      if (!this.recompute(index)) return;
    }
  }

  clear(slot: number): void {
    this.set(slot, Number.NEGATIVE_INFINITY, -1, Number.POSITIVE_INFINITY, -1, false);
  }

  viable(index: number, query: BucketQuery): boolean {
    return (
      (this.key[index] as number) > Number.NEGATIVE_INFINITY &&
      (this.memory[index] as number) >= query.need &&
      (this.price[index] as number) <= query.maxPrice &&
      (this.reputation[index] as number) >= query.minReputation &&
      (!query.direct || this.direct[index] === 1)
    );
  }

  /** Recomputes an inner node from its children; false when nothing changed. */
  private recompute(index: number): boolean {
    const left = 2 * index;
    const right = left + 1;
    const key = Math.max(this.key[left] as number, this.key[right] as number);
    const memory = Math.max(this.memory[left] as number, this.memory[right] as number);
    const price = Math.min(this.price[left] as number, this.price[right] as number);
    const reputation = Math.max(this.reputation[left] as number, this.reputation[right] as number);
    const direct = (this.direct[left] as number) | (this.direct[right] as number);
    if (
      key === this.key[index] &&
      memory === this.memory[index] &&
      price === this.price[index] &&
      reputation === this.reputation[index] &&
      direct === this.direct[index]
    ) {
      return false;
    }
    this.key[index] = key;
    this.memory[index] = memory;
    this.price[index] = price;
    this.reputation[index] = reputation;
    this.direct[index] = direct;
    return true;
  }

  /**
   * The slot of the leaf that passes `query` and `accept` with the highest `sign * order` (the
   * layer's key, memory or reputation ascending with sign 1; its price descending with sign -1,
   * i.e. cheapest first), ties to the lower slot; -1 when none passes.
   */
  search<T>(
    members: readonly (T | undefined)[],
    query: BucketQuery,
    accept: (member: T) => boolean,
    order: Float64Array = this.key,
    sign: 1 | -1 = 1,
  ): number {
    if (!this.viable(1, query)) return -1;
    let size = heapPush(0, sign * (order[1] as number), 1);
    while (size > 0) {
      const index = heapIds[0] as number;
      size = heapPop(size);
      if (index >= this.leaves) {
        const member = members[index - this.leaves];
        if (member !== undefined && accept(member)) return index - this.leaves;
        continue;
      }
      const left = 2 * index;
      if (this.viable(left, query)) size = heapPush(size, sign * (order[left] as number), left);
      if (this.viable(left + 1, query)) {
        size = heapPush(size, sign * (order[left + 1] as number), left + 1);
      }
    }
    return -1;
  }
}

/**
 * Whether a leaf passes `query` and `accept`, depth first (a key order would visit whole levels
 * before reaching a leaf).
 */
function exists<T>(
  layer: Layer,
  members: readonly (T | undefined)[],
  query: BucketQuery,
  accept: (member: T) => boolean,
): boolean {
  if (!layer.viable(1, query)) return false;
  let size = 0;
  stack[size++] = 1;
  while (size > 0) {
    const index = stack[--size] as number;
    if (index >= layer.leaves) {
      const member = members[index - layer.leaves];
      if (member !== undefined && accept(member)) return true;
      continue;
    }
    const left = 2 * index;
    if (layer.viable(left + 1, query)) stack[size++] = left + 1;
    if (layer.viable(left, query)) stack[size++] = left;
  }
  return false;
}

/** The two-layer index of one bucket; see the module comment. */
export class BucketTree<T> {
  private now: Layer;
  private idle: Layer;
  private members: (T | undefined)[];
  private readonly vacant: number[] = [];
  private used = 0;
  private count = 0;
  private readonly usableSlots = new Set<number>();

  /** An empty tree with room for `initialCapacity` members before it grows (rounded up to a power of 2). */
  constructor(initialCapacity = 16) {
    let leaves = 1;
    while (leaves < initialCapacity) leaves *= 2;
    this.now = new Layer(leaves);
    this.idle = new Layer(leaves);
    this.members = new Array<T | undefined>(leaves).fill(undefined);
  }

  /** How many members the tree has. */
  get size(): number {
    return this.count;
  }

  /** Adds `member` with inactive leaves and returns its slot (stable until {@link remove}). */
  add(member: T): number {
    let slot = this.vacant.pop();
    if (slot === undefined) {
      if (this.used === this.now.leaves) this.grow();
      slot = this.used++;
    }
    this.members[slot] = member;
    this.count++;
    return slot;
  }

  /** How many members are usable (online, not banned) as of {@link setIdle}. */
  get usable(): number {
    return this.usableSlots.size;
  }

  /** Removes the member at `slot`. */
  remove(slot: number): void {
    this.now.clear(slot);
    this.idle.clear(slot);
    this.usableSlots.delete(slot);
    this.members[slot] = undefined;
    this.vacant.push(slot);
    this.count--;
  }

  /** The member at `slot`, if any. */
  memberAt(slot: number): T | undefined {
    return this.members[slot];
  }

  /** Sets what the member at `slot` can take now: its score and free memory. */
  set(
    slot: number,
    score: number,
    free: number,
    price: number,
    reputation: number,
    direct: boolean,
  ): void {
    this.now.set(slot, score, free, price, reputation, direct);
  }

  /** Marks the member at `slot` unable to take a job now: no {@link search} returns it. */
  deactivate(slot: number): void {
    this.now.clear(slot);
  }

  /**
   * Sets what the member at `slot` could take when idle (`capacity`: the most memory one job can
   * get); an unusable (offline or banned) member is hidden from {@link anyCapable}.
   */
  setIdle(
    slot: number,
    usable: boolean,
    capacity: number,
    price: number,
    reputation: number,
    direct: boolean,
  ): void {
    if (usable) {
      this.idle.set(slot, 0, capacity, price, reputation, direct);
      this.usableSlots.add(slot);
    } else {
      this.idle.clear(slot);
      this.usableSlots.delete(slot);
    }
  }

  /** The score stored for `slot` (-Infinity when inactive). */
  scoreAt(slot: number): number {
    return this.now.key[this.now.leaves + slot] as number;
  }

  /**
   * The slot of the best-scoring member able to take a job now that passes `query` (need: free
   * memory) and `accept`, or -1. Ties go to the lower slot. `accept` must not search any tree.
   */
  search(query: BucketQuery, accept: (member: T) => boolean): number {
    return this.now.search(this.members, query, accept);
  }

  /**
   * Whether an online, unbanned member passes `query` (need: memory it offers at all) and
   * `accept`, load aside. `accept` must not search any tree.
   */
  anyCapable(query: BucketQuery, accept: (member: T) => boolean): boolean {
    return exists(this.idle, this.members, query, accept);
  }

  /**
   * Among usable members passing `query` (need: memory offered at all) and `accept`, load aside:
   * the one with the highest reputation, the lowest price or the most memory; undefined if none.
   */
  bestIdle(
    query: BucketQuery,
    accept: (member: T) => boolean,
    by: "reputation" | "cheapest" | "memory",
  ): T | undefined {
    const order =
      by === "reputation"
        ? this.idle.reputation
        : by === "cheapest"
          ? this.idle.price
          : this.idle.memory;
    const slot = this.idle.search(this.members, query, accept, order, by === "cheapest" ? -1 : 1);
    return slot < 0 ? undefined : this.members[slot];
  }

  private grow(): void {
    this.now = this.now.grown();
    this.idle = this.idle.grown();
    const old = this.members.length;
    this.members.length = this.now.leaves;
    this.members.fill(undefined, old);
  }
}

// A max-heap of tree indices keyed by score (ties: lower index first), shared by all trees:
// searches never overlap because `accept` may not search.
function before(keyA: number, idA: number, keyB: number, idB: number): boolean {
  return keyA > keyB || (keyA === keyB && idA < idB);
}

function heapPush(size: number, key: number, id: number): number {
  if (size === heapKeys.length) {
    const keys = new Float64Array(size * 2);
    keys.set(heapKeys);
    heapKeys = keys;
    const ids = new Int32Array(size * 2);
    ids.set(heapIds);
    heapIds = ids;
  }
  let at = size;
  while (at > 0) {
    const parent = (at - 1) >> 1;
    const parentKey = heapKeys[parent] as number;
    const parentId = heapIds[parent] as number;
    if (!before(key, id, parentKey, parentId)) break;
    heapKeys[at] = parentKey;
    heapIds[at] = parentId;
    at = parent;
  }
  heapKeys[at] = key;
  heapIds[at] = id;
  return size + 1;
}

function heapPop(size: number): number {
  const last = size - 1;
  const key = heapKeys[last] as number;
  const id = heapIds[last] as number;
  let at = 0;
  for (;;) {
    let child = 2 * at + 1;
    if (child >= last) break;
    const right = child + 1;
    if (
      right < last &&
      before(
        heapKeys[right] as number,
        heapIds[right] as number,
        heapKeys[child] as number,
        heapIds[child] as number,
      )
    ) {
      child = right;
    }
    if (!before(heapKeys[child] as number, heapIds[child] as number, key, id)) break;
    heapKeys[at] = heapKeys[child] as number;
    heapIds[at] = heapIds[child] as number;
    at = child;
  }
  heapKeys[at] = key;
  heapIds[at] = id;
  return last;
}
