import { ownBuffer, type LentBuffer } from '../core/pinned-bytes.js';

/** Buffers of evicted blocks kept for reuse, at most (a read-ahead window's worth: see read-ahead.ts), and never over a quarter of the budget in bytes. */
export const SPARES_KEPT = 32;

/**
 * Decoded backup blocks kept in memory, under one byte budget shared by
 * every disk that uses the cache (all the sessions of a server), least
 * recently used first out.
 *
 * A block read from the disk cache into memory the cache may reuse is
 * *reusable*: once evicted, and once no borrower pins it, its buffer becomes
 * a spare that the next such read fills instead of allocating. A warm pass
 * over a disk larger than the budget then allocates nothing, and the
 * collector, which ran on every few megabytes of new buffers, stays idle.
 * A block anyone was given outright (get, or a load for a plain read) is
 * never reused: eviction only forgets it, so a reader that holds it (or a
 * view of it) keeps reading the right bytes.
 *
 * Blocks read from the disk cache start on probation (2Q's first queue, first
 * in first out): together they take at most a quarter of the budget, however
 * often they are read meanwhile (the four 256 KiB reads of one block are one
 * use), and read-ahead's blocks, loaded last, go last. One that a client read
 * while on probation is remembered by its disk when it leaves; loaded again
 * while remembered, it was wanted twice and joins the rest of the cache. So a
 * warm pass over a disk larger than the cache cycles through the quarter
 * (allocating nothing once it is full), and a hot set the cache can hold stays
 * in memory. Until the cache is three-quarters full, blocks from the disk
 * cache skip probation: there is nothing yet for it to protect.
 */
export class BlockCache {
  /** Every entry, least recently used first (a Map keeps insertion order). */
  private readonly lru = new Map<Entry, true>();
  private used = 0;
  private peak = 0;
  /** Entries on probation, first in first out (a hit does not move them), and their bytes. */
  private readonly probation = new Map<Entry, true>();
  private probationUsed = 0;
  /** Spare buffers, oldest first: SPARES_KEPT at most, a quarter of the budget in bytes at most. */
  private readonly spares: Buffer[] = [];
  private spareUsed = 0;
  /** Reads that found their block here, and those that did not (holes are neither). */
  hits = 0;
  misses = 0;
  /** Buffers handed out again as spares instead of allocated. */
  reused = 0;

  /** Bytes blocks on probation may take: a quarter of the budget, what read-ahead's windows may fill (read-ahead.ts). */
  readonly probationBudgetBytes: number;

  constructor(readonly budgetBytes: number) {
    if (!Number.isSafeInteger(budgetBytes) || budgetBytes < 0) throw new RangeError(`cache budget ${budgetBytes} must be a whole number of bytes ≥ 0`);
    this.probationBudgetBytes = Math.floor(budgetBytes / 4);
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

  /** Spare buffers waiting to be filled again, and their bytes (besides usedBytes). */
  get spareCount(): number {
    return this.spares.length;
  }

  get spareBytes(): number {
    return this.spareUsed;
  }

  /** The cache as one disk sees it: blocks by index, dropped with the disk. */
  forDisk(): DiskBlockCache {
    return new DiskBlockCache(this);
  }

  /** A buffer of `length` bytes whose old block nobody reads any more, to be filled and set as a reusable block; undefined if none. */
  takeSpare(length: number): Buffer | undefined {
    for (let i = this.spares.length - 1; i >= 0; i--) {
      const b = this.spares[i]!;
      if (b.length !== length) continue;
      this.spares.splice(i, 1);
      this.spareUsed -= b.length;
      this.reused += 1;
      return b;
    }
    return undefined;
  }

  /** Keeps `b` (nobody reads it any more) as a spare; the oldest spares go when there are too many. */
  giveSpare(b: Buffer): void {
    // At least one, so that a cache of a few blocks reuses too.
    const max = Math.max(Math.floor(this.budgetBytes / 4), b.length);
    if (b.length > max) return;
    this.spares.push(b);
    this.spareUsed += b.length;
    while (this.spares.length > SPARES_KEPT || this.spareUsed > max) this.spareUsed -= this.spares.shift()!.length;
  }

  /** True while `length` more bytes would leave the cache a quarter of its budget free (what probation may take). */
  hasRoomToSpare(length: number): boolean {
    return this.used + length <= this.budgetBytes - this.probationBudgetBytes;
  }

  /** @internal Makes `e` the most recently used. */
  touch(e: Entry): void {
    this.lru.delete(e);
    this.lru.set(e, true);
  }

  /** @internal Adds `e`, first evicting the least recently used until it fits; false if it can never fit. */
  admit(e: Entry): boolean {
    if (e.data.length > this.budgetBytes) return false;
    if (e.onProbation) {
      // Never less than a few blocks: a small cache's probation still holds a read-ahead window.
      const room = Math.max(this.probationBudgetBytes, Math.min(this.budgetBytes / 2, 4 * e.data.length));
      for (const old of this.probation.keys()) {
        if (this.probationUsed + e.data.length <= room) break;
        this.evict(old);
      }
      this.probation.set(e, true);
      this.probationUsed += e.data.length;
    }
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
    if (this.probation.delete(e)) this.probationUsed -= e.data.length;
    e.evicted = true;
    e.owner.forget(e);
    if (e.onProbation && e.read) e.owner.remember(e.blockIndex, Math.max(4, Math.floor(this.budgetBytes / 2 / e.data.length)));
    if (e.pins === 0 && e.reusable) this.giveSpare(e.data);
  }

  /** @internal A borrower is done with `e`. */
  unpin(e: Entry): void {
    e.pins -= 1;
    if (e.pins === 0 && e.evicted && e.reusable) this.giveSpare(e.data);
  }
}

interface Entry {
  readonly owner: DiskBlockCache;
  readonly blockIndex: number;
  readonly data: Buffer;
  /** Borrowers reading it now: it is not reused before they are done. */
  pins: number;
  /** Its buffer may hold another block once evicted and unpinned; false once it was given to anyone outright. */
  reusable: boolean;
  /** Read from the disk cache and not yet wanted twice: it counts against probationBudgetBytes. */
  readonly onProbation: boolean;
  /** A client read it (not only read-ahead): leaving probation, it is remembered. */
  read: boolean;
  evicted: boolean;
}

/** A block just set, pinned for the borrowers that waited for it: each takes one pin with lend(). */
export type CachedBlock = Entry;

/** One disk's blocks in a BlockCache. */
export class DiskBlockCache {
  private readonly entries = new Map<number, Entry>();
  /** Blocks that left probation lately, oldest first: loaded again, they join the rest of the cache. */
  private readonly remembered = new Map<number, true>();
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

  /** The block, now the most recently used, given outright (it is never reused); undefined if not held. */
  get(blockIndex: number): Buffer | undefined {
    const e = this.lookup(blockIndex);
    if (e === undefined) return undefined;
    e.reusable = false;
    return e.data;
  }

  /** The block's bytes if held and never to be reused (decoded from the backup, or given outright), else undefined; not counted as a read. */
  peekStable(blockIndex: number): Buffer | undefined {
    const e = this.entries.get(blockIndex);
    return e !== undefined && !e.reusable ? e.data : undefined;
  }

  /** The block, now the most recently used, lent until release(); undefined if not held. */
  pin(blockIndex: number): LentBuffer | undefined {
    const e = this.lookup(blockIndex);
    if (e === undefined) return undefined;
    e.pins += 1;
    return this.lease(e);
  }

  /**
   * Keeps `data` as the block. `reloadable`: read from the disk cache (it
   * starts on probation unless a client read it there lately). `reusable`:
   * its buffer may hold another block once it is evicted and unpinned
   * (nobody else has it). `read`: a client waits for it (by default, when it
   * has pins). `pins`: borrowers that wait for it, each to take its pin with
   * lend(). Undefined if it is not kept (larger than the budget, or the disk
   * is closed).
   */
  set(blockIndex: number, data: Buffer, opts: { reloadable?: boolean; reusable?: boolean; pins?: number; read?: boolean } = {}): CachedBlock | undefined {
    // A decode that finishes after its disk closed must not take room nobody will free.
    if (this.closed) return undefined;
    const old = this.entries.get(blockIndex);
    const reloadable = opts.reloadable ?? false;
    // Replacing a copy that had left probation keeps it out; while the cache has room to spare, nothing waits on
    // probation (it protects the cache's blocks from a scan, and there are none to lose yet).
    const again = reloadable && (this.remembered.has(blockIndex) || (old !== undefined && !old.onProbation) || this.shared.hasRoomToSpare(data.length));
    if (old !== undefined) this.shared.evict(old);
    this.remembered.delete(blockIndex);
    const e: Entry = {
      owner: this,
      blockIndex,
      data,
      pins: opts.pins ?? 0,
      reusable: reloadable && (opts.reusable ?? false),
      onProbation: reloadable && !again,
      read: opts.read ?? (opts.pins ?? 0) > 0,
      evicted: false,
    };
    if (!this.shared.admit(e)) return undefined;
    this.entries.set(blockIndex, e);
    return e;
  }

  /** One of the pins `set` took for a waiting borrower, as the borrower's lease. */
  lend(block: CachedBlock): LentBuffer {
    return this.lease(block);
  }

  /** Drops every block of this disk. */
  clear(): void {
    for (const e of [...this.entries.values()]) this.shared.evict(e);
  }

  /** The disk closes: its blocks go, and none is kept after. */
  close(): void {
    this.closed = true;
    this.clear();
    this.remembered.clear();
  }

  /** @internal A block left probation: remembered (`max` blocks at most) in case it is loaded again. */
  remember(blockIndex: number, max: number): void {
    if (this.closed) return;
    this.remembered.delete(blockIndex);
    this.remembered.set(blockIndex, true);
    for (const old of this.remembered.keys()) {
      if (this.remembered.size <= max) break;
      this.remembered.delete(old);
    }
  }

  /** @internal Called by the shared cache when it evicts one of ours. */
  forget(e: Entry): void {
    if (this.entries.get(e.blockIndex) === e) this.entries.delete(e.blockIndex);
  }

  private lookup(blockIndex: number): Entry | undefined {
    const e = this.entries.get(blockIndex);
    if (e === undefined) {
      this.shared.misses += 1;
      return undefined;
    }
    this.shared.hits += 1;
    e.read = true;
    this.shared.touch(e);
    return e;
  }

  private lease(e: Entry): LentBuffer {
    if (!e.reusable) {
      // Never reused: nothing to count.
      e.pins -= 1;
      return ownBuffer(e.data);
    }
    let released = false;
    return {
      data: e.data,
      release: () => {
        if (released) return;
        released = true;
        this.shared.unpin(e);
      },
    };
  }
}
