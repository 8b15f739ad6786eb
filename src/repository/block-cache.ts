/**
 * Decoded backup blocks kept in memory, under one byte budget shared by
 * every disk that uses the cache (all the sessions of a server), least
 * recently used first out. Eviction only forgets a buffer: it is never
 * reused or overwritten, so a reader that holds a block (or a view of it)
 * keeps reading the right bytes after the cache let it go.
 */
export class BlockCache {
  /** Every entry, least recently used first (a Map keeps insertion order). */
  private readonly lru = new Map<Entry, true>();
  private used = 0;
  private peak = 0;
  /** Reads that found their block here, and those that did not (holes are neither). */
  hits = 0;
  misses = 0;

  constructor(readonly budgetBytes: number) {
    if (!Number.isSafeInteger(budgetBytes) || budgetBytes < 0) throw new RangeError(`cache budget ${budgetBytes} must be a whole number of bytes ≥ 0`);
  }

  /** Bytes of the blocks held now. */
  get usedBytes(): number {
    return this.used;
  }

  /** The most bytes held at any time since the cache was made. */
  get peakBytes(): number {
    return this.peak;
  }

  /** Blocks held now, across every disk. */
  get blockCount(): number {
    return this.lru.size;
  }

  /** The cache as one disk sees it: blocks by index, dropped with the disk. */
  forDisk(): DiskBlockCache {
    return new DiskBlockCache(this);
  }

  /** @internal Makes `e` the most recently used. */
  touch(e: Entry): void {
    this.lru.delete(e);
    this.lru.set(e, true);
  }

  /** @internal Adds `e`, first evicting the least recently used until it fits; false if it can never fit. */
  admit(e: Entry): boolean {
    if (e.data.length > this.budgetBytes) return false;
    for (const old of this.lru.keys()) {
      if (this.used + e.data.length <= this.budgetBytes) break;
      this.evict(old);
    }
    this.lru.set(e, true);
    this.used += e.data.length;
    this.peak = Math.max(this.peak, this.used);
    return true;
  }

  /** @internal */
  evict(e: Entry): void {
    if (!this.lru.delete(e)) return;
    this.used -= e.data.length;
    e.owner.forget(e);
  }
}

interface Entry {
  readonly owner: DiskBlockCache;
  readonly blockIndex: number;
  readonly data: Buffer;
}

/** One disk's blocks in a BlockCache. */
export class DiskBlockCache {
  private readonly entries = new Map<number, Entry>();
  private closed = false;

  constructor(private readonly shared: BlockCache) {}

  /** False when the budget is 0: nothing is ever kept (callers skip read-ahead too). */
  get enabled(): boolean {
    return this.shared.budgetBytes > 0;
  }

  has(blockIndex: number): boolean {
    return this.entries.has(blockIndex);
  }

  /** Counts a read that went past the cache (a small random read decodes only part of a block, and keeps none of it here). */
  missed(): void {
    this.shared.misses += 1;
  }

  /** The block, now the most recently used; undefined if not held. */
  get(blockIndex: number): Buffer | undefined {
    const e = this.entries.get(blockIndex);
    if (e === undefined) {
      this.shared.misses += 1;
      return undefined;
    }
    this.shared.hits += 1;
    this.shared.touch(e);
    return e.data;
  }

  set(blockIndex: number, data: Buffer): void {
    // A decode that finishes after its disk closed must not take room nobody will free.
    if (this.closed) return;
    const old = this.entries.get(blockIndex);
    if (old !== undefined) this.shared.evict(old);
    const e: Entry = { owner: this, blockIndex, data };
    if (this.shared.admit(e)) this.entries.set(blockIndex, e);
  }

  /** Drops every block of this disk. */
  clear(): void {
    for (const e of [...this.entries.values()]) this.shared.evict(e);
  }

  /** The disk closes: its blocks go, and none is kept after. */
  close(): void {
    this.closed = true;
    this.clear();
  }

  /** @internal Called by the shared cache when it evicts one of ours. */
  forget(e: Entry): void {
    if (this.entries.get(e.blockIndex) === e) this.entries.delete(e.blockIndex);
  }
}
