import { LifeboatError, queued } from '../core/errors.js';
import { knownFrames, type BlockWorkerPool, type DecodeRange } from '../compress/block-pool.js';
import type { Storage } from '../storage/index.js';
import type { BackupFileReader } from './backup-file.js';
import { ChainBlockMap } from './chain-block-map.js';
import { ownBuffer, pinnedParts, pinnedRange, unpinned, type LentBuffer, type PinnedBytes } from '../core/pinned-bytes.js';
import { BlockCache, type CachedBlock, type DiskBlockCache } from './block-cache.js';
import type { DecodedBlockStore } from './decoded-store.js';
import { BackgroundFills, ReadRecording } from './background-fills.js';
import { ReadAheadStreams } from './read-ahead.js';
import type { ChainFile } from './job-state.js';
import type { VirtualDisk } from './virtual-disk.js';

/** Reads up to this size that do not follow the previous one decode only the frames they touch. */
const RANDOM_READ_MAX = 128 * 1024;
/** Blocks whose frame boundaries are remembered (~100 bytes each). */
const FRAME_BOUNDS_KEPT = 65536;
/** Blocks read in part that wait to be decoded whole for the disk cache; more are not queued. */
const FILLS_QUEUED = 64;
/** Blocks the disk cache dropped that wait to be written later (the block numbers only); more are not queued. */
const KEEPS_QUEUED = 4096;
/** Blocks a prefetch may queue (the first ones of its list) and a recording may hold: 16 GiB of 1 MiB blocks. */
export const PREFETCH_MAX_BLOCKS = 16384;

/**
 * One disk of one restore point, resolved through its chain (ChainBlockMap).
 * Reads find a block in the memory cache (block-cache.ts), else in the disk
 * cache of decoded blocks (decoded-store.ts), else decompress and verify it
 * from the backup, in the workers when there is a pool. A read may be lent
 * (readPinned), a view of each block it covers, instead of given, so the
 * memory cache can reuse the buffers once the borrower is done.
 */
export class RestorePointDisk implements VirtualDisk {
  readonly size: number;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly disk: number;
  /** The chain's files and, by block, which one holds it (0 = zeros; k = layers[k-1]) in which slot: see ChainBlockMap. */
  private readonly layers: readonly BackupFileReader[];
  private readonly layerOf: Uint16Array;
  private readonly slotOf: Int32Array;
  private readonly cache: DiskBlockCache;
  /** The memory cache this disk's blocks are in (maybe shared with other disks): spare buffers come from it. */
  private readonly shared: BlockCache;
  /** Blocks being loaded: concurrent readers of one block share one load. */
  private readonly inflight = new Map<number, Load>();
  /** The sequential readers, each with its own read-ahead window. */
  private readonly streams: ReadAheadStreams;
  /** Stored frame boundaries of blocks read at random, so the next random read fetches one frame. */
  private readonly frameBounds = new Map<number, Int32Array>();
  /** Blocks being read and decoded for a worker, and who waits for none to be (close() must not pull files from under them). */
  private decoding = 0;
  private idle: (() => void) | undefined;
  /** close() has begun: a keep that waited for room writes nothing. */
  private closing = false;
  /** One block of zeros, handed out (as views) for every hole: holes cost no allocation. */
  private zeroBlock: Buffer | undefined;
  /** Decoded blocks on local storage, kept across restarts; never for an encrypted point (it would hold the plaintext). */
  private readonly decoded: DecodedBlockStore | undefined;
  /** Blocks read in part, to be decoded whole, one at a time, so the disk cache has them next time. */
  private readonly fills: BackgroundFills;
  /** The blocks clients read, in the order first read, while a recording runs (boot prefetch learns from them). */
  private recording: ReadRecording | undefined;

  private constructor(
    private readonly map: ChainBlockMap,
    cache: BlockCache | number,
    private readonly pool: BlockWorkerPool | undefined,
    decoded: DecodedBlockStore | undefined,
  ) {
    this.disk = map.disk;
    this.blockSize = map.blockSize;
    this.size = map.size;
    this.blockCount = map.blockCount;
    this.layers = map.layers;
    this.layerOf = map.layerOf;
    this.slotOf = map.slotOf;
    this.decoded = decoded !== undefined && this.layers.every((l) => l.keys === undefined) ? decoded : undefined;
    this.fills = new BackgroundFills(
      (bi) => this.loadBlock(bi, 'dropped'),
      (bi) => this.layerOf[bi] !== 0 && !this.cache.has(bi) && !this.inflight.has(bi) && !this.decoded?.has(this.digestOf(bi)!, this.rawLength(bi)),
      FILLS_QUEUED,
      PREFETCH_MAX_BLOCKS,
      (bi, paced) => this.keepBlock(bi, paced),
      // No more blocks than the disk cache holds: more would push out those written before them.
      Math.min(KEEPS_QUEUED, Math.floor((this.decoded?.budgetBytes ?? 0) / this.blockSize)),
    );
    // A disk with a cache of its own keeps at least one block.
    const shared = typeof cache === 'number' ? new BlockCache(Math.max(cache, this.blockSize)) : cache;
    this.shared = shared;
    this.cache = shared.forDisk();
    // Without workers a block decodes on this thread: one block ahead, never more.
    this.streams = ReadAheadStreams.forCache(pool ? pool.size * 2 : 1, pool ? shared.budgetBytes : 0, this.blockSize, this.blockCount);
  }

  /**
   * Opens disk `disk` of the point whose files are `files` (full first).
   * Decoded blocks go to `cache` (shared with other disks under one budget)
   * or, without it, to a cache of the disk's own of `cacheBytes`; with
   * `decoded`, also to local storage, where the next read of the same block
   * (by this disk, another point's, or after a restart) finds it.
   */
  static async open(
    files: readonly ChainFile[],
    disk: number,
    opts: { cacheBytes?: number; cache?: BlockCache; pool?: BlockWorkerPool; storage?: Storage; decoded?: DecodedBlockStore | undefined } = {},
  ): Promise<RestorePointDisk> {
    const map = await ChainBlockMap.open(files, disk, opts.storage);
    return new RestorePointDisk(map, opts.cache ?? opts.cacheBytes ?? 64 * 1024 * 1024, opts.pool, opts.decoded);
  }

  rawLength(blockIndex: number): number {
    return this.map.rawLength(blockIndex);
  }

  private zeros(length: number): Buffer {
    this.zeroBlock ??= Buffer.alloc(this.blockSize);
    return this.zeroBlock.subarray(0, length);
  }

  isAllocated(blockIndex: number): boolean {
    return this.layerOf[blockIndex] !== 0;
  }

  /** Allocation by block: blocks the point stores are data, the others holes. */
  extents(offset: number, length: number): { length: number; hole: boolean }[] {
    return this.map.extents(offset, length);
  }

  allocatedBlocks(): Iterable<number> {
    return this.map.allocatedBlocks();
  }

  /** Where a block's stored bytes are at this point (file and table slot), or undefined for zeros. */
  storedBlock(blockIndex: number): { readonly file: BackupFileReader; readonly slot: number } | undefined {
    return this.map.storedBlock(blockIndex);
  }

  /** The digest of a block at this point, or null if it reads as zeros. Used for change detection. */
  digestOf(blockIndex: number): Buffer | null {
    return this.map.digestOf(blockIndex);
  }

  /** One whole block (the last one may be short), verified. Shared: see VirtualDisk.read. */
  async readBlock(blockIndex: number): Promise<Buffer> {
    if (this.layerOf[blockIndex] === 0) return this.zeros(this.rawLength(blockIndex));
    return this.cache.get(blockIndex) ?? (await this.loadBlock(blockIndex, 'given')).data;
  }

  /** As readBlock, lent: the memory holds the block until release(), then it may hold another one. */
  private async lendBlock(blockIndex: number): Promise<LentBuffer> {
    if (this.layerOf[blockIndex] === 0) return ownBuffer(this.zeros(this.rawLength(blockIndex)));
    const hit = this.cache.pin(blockIndex);
    if (hit) return hit;
    const { data, block } = await this.loadBlock(blockIndex, 'lent');
    return block ? this.cache.lend(block) : ownBuffer(data);
  }

  /**
   * Loads a block that is not in memory, once for everyone who asks while it
   * loads, into the memory cache. `use` is what the asker does with it:
   * given it outright (its buffer is then never reused), lent it (a pin
   * taken for it when the load settles), or nothing (read-ahead, fills).
   */
  private loadBlock(blockIndex: number, use: 'given' | 'lent' | 'dropped'): Promise<{ data: Buffer; block: CachedBlock | undefined }> {
    let load = this.inflight.get(blockIndex);
    if (load === undefined) {
      const l: Load = { pins: 0, given: false, done: undefined! };
      const settle = (data: Buffer, fromDiskCache: boolean): { data: Buffer; block: CachedBlock | undefined } => {
        // In one step with setting the entry, its pins taken: no other task can evict and reuse it before its askers run.
        this.inflight.delete(blockIndex);
        return { data, block: this.cache.set(blockIndex, data, { reloadable: fromDiskCache, reusable: !l.given, pins: l.pins, read: l.pins > 0 || l.given }) };
      };
      l.done = this.decodeBlock(blockIndex, this.layerOf[blockIndex]!, this.rawLength(blockIndex)).then(
        (r) => settle(r.data, r.fromDiskCache),
        (err: unknown) => {
          this.inflight.delete(blockIndex);
          throw err;
        },
      );
      this.inflight.set(blockIndex, l);
      load = l;
    }
    if (use === 'lent') load.pins += 1;
    else if (use === 'given') load.given = true;
    return load.done;
  }

  /**
   * The block from the disk cache (read into a spare buffer of the memory
   * cache when it has one), or decoded from the backup and then kept in the
   * disk cache (whose write holds the buffer: never reused).
   */
  private async decodeBlock(blockIndex: number, l: number, len: number): Promise<{ data: Buffer; fromDiskCache: boolean }> {
    const store = this.decoded;
    if (store === undefined) return { data: await this.decodeStoredBlock(blockIndex, l, len), fromDiskCache: false };
    // Counted from here: close() must wait for a read that is still in the disk cache before it reaches the files.
    this.decoding += 1;
    try {
      const digest = this.digestOf(blockIndex)!;
      // A spare buffer is taken only for a block the disk cache holds (a damaged one loses it to the collector).
      const kept = await store.readBlockInto(digest, len, () => this.shared.takeSpare(len) ?? Buffer.allocUnsafe(len));
      if (kept !== undefined) return { data: kept, fromDiskCache: true };
      const data = await this.decodeStoredBlock(blockIndex, l, len);
      // Filed under its digest, the block may be served for any point whose block has that digest: the store
      // checks its SHA-256 (off this thread, before writing) even where the zstd frame's checksum did for this read.
      // Dropped while writes are pending (a fast stream): kept later (paced while clients read), from memory or decoded again.
      if (!store.put(digest, data)) this.fills.addKeep(blockIndex);
      return { data, fromDiskCache: false };
    } finally {
      this.decoding -= 1;
      if (this.decoding === 0) this.idle?.();
    }
  }

  /**
   * Writes a block the disk cache dropped while its writes were pending: the
   * bytes the memory cache still holds, or decoded again (not into the
   * memory cache, whose blocks clients read now). It waits for the disk cache
   * to take a write rather than be dropped again.
   */
  private async keepBlock(bi: number, paced: boolean): Promise<void> {
    const store = this.decoded;
    if (store === undefined || this.layerOf[bi] === 0) return;
    const digest = this.digestOf(bi)!;
    const len = this.rawLength(bi);
    // Counted from here: close() waits for a keep that waits for room, and it then decodes nothing.
    this.decoding += 1;
    try {
      await store.writable();
      if (this.closing || store.has(digest, len)) return;
      const data = this.cache.peekStable(bi) ?? (await this.decodeStoredBlock(bi, this.layerOf[bi]!, len));
      // Another disk's writes may have taken the room meanwhile: the decoded block waits, it is not decoded again.
      while (!store.put(digest, data)) await store.writable();
      // While clients read, its time, write included, paces the next keep (background-fills.ts); idle, up to the
      // store's pending writes run at once.
      if (paced) await store.written(digest, len);
    } finally {
      this.decoding -= 1;
      if (this.decoding === 0) this.idle?.();
    }
  }

  /** Reads and verifies a stored block, in a worker when there is a pool (the main thread keeps serving). */
  private decodeStoredBlock(blockIndex: number, l: number, len: number): Promise<Buffer> {
    const layer = this.layers[l - 1]!;
    const slot = this.slotOf[blockIndex]!;
    if (this.pool === undefined) return layer.readBlock(this.disk, slot, len);
    return this.decodeInWorker(this.pool, layer, slot, len);
  }

  /** The stored bytes are read here (through the layer's Storage) and handed to a worker to decode; close() waits for both. */
  private async decodeInWorker(pool: BlockWorkerPool, layer: BackupFileReader, slot: number, len: number): Promise<Buffer> {
    return (await this.decodeRangeInWorker(pool, layer, slot, len, undefined)).data;
  }

  /** As decodeInWorker, or only the frames covering `range` when the block is stored in frames. */
  private async decodeRangeInWorker(
    pool: BlockWorkerPool,
    layer: BackupFileReader,
    slot: number,
    len: number,
    range: DecodeRange | undefined,
  ): Promise<{ data: Buffer; start: number; bounds?: Int32Array | undefined }> {
    const table = layer.root.tables[this.disk]!;
    this.decoding += 1;
    try {
      // With known frame boundaries, a small read fetches only the frames it needs.
      const frames = knownFrames(table.codec(slot), range);
      const stored = frames ? await layer.readStoredPart(table, slot, frames.start, frames.end - frames.start) : await layer.readStored(table, slot);
      const r = await pool.decode(stored, table.codec(slot), len, table.digest(slot), range, false, layer.keys);
      if (r.data === null) throw layer.blockError(table, slot, r.problem ?? 'is damaged');
      return { data: Buffer.from(r.data), start: r.start ?? 0, bounds: r.bounds };
    } finally {
      this.decoding -= 1;
      if (this.decoding === 0) this.idle?.();
    }
  }

  /** A sequential reader finds blocks [from, to) already decoding. Failures surface when they are read. */
  private readAhead(from: number, to: number): void {
    for (let bi = from; bi < to; bi++) {
      if (this.layerOf[bi] === 0 || this.cache.has(bi) || this.inflight.has(bi)) continue;
      void queued(this.loadBlock(bi, 'dropped'));
    }
  }

  /**
   * Streams whole blocks. With a worker pool, a window of blocks is read and
   * decoded (decompress + SHA-256) in the workers ahead of the consumer, so
   * reading, decoding and the consumer's writes overlap on every core.
   */
  async *readBlocks(blockIndexes: Iterable<number>): AsyncIterable<{ readonly blockIndex: number; readonly data: Buffer }> {
    const pool = this.pool;
    if (pool === undefined) {
      for (const bi of blockIndexes) yield { blockIndex: bi, data: await this.readBlock(bi) };
      return;
    }
    const window = pool.size * 4;
    const queue: Promise<{ blockIndex: number; data: Buffer }>[] = [];
    const it = blockIndexes[Symbol.iterator]();
    const start = (bi: number): Promise<{ blockIndex: number; data: Buffer }> => {
      // A migration or restore reads now: the disk cache's late writes wait for it.
      this.fills.noteClientRead();
      const len = this.rawLength(bi);
      const l = this.layerOf[bi]!;
      if (l === 0) return Promise.resolve({ blockIndex: bi, data: this.zeros(len) });
      // A stream (a restore, a migration) takes what the disk cache has but adds nothing to it: it reads each block once.
      if (this.decoded?.has(this.digestOf(bi)!, len)) return this.readKeptOrDecode(pool, bi, l, len).then((data) => ({ blockIndex: bi, data }));
      return this.decodeInWorker(pool, this.layers[l - 1]!, this.slotOf[bi]!, len).then((data) => ({ blockIndex: bi, data }));
    };
    try {
      for (;;) {
        while (queue.length < window) {
          const n = it.next();
          if (n.done) break;
          queue.push(queued(start(n.value)));
        }
        const head = queue.shift();
        if (head === undefined) return;
        yield await head;
      }
    } finally {
      // Settle what is still in flight so no rejection goes unhandled.
      await Promise.allSettled(queue);
    }
  }

  private async readKeptOrDecode(pool: BlockWorkerPool, bi: number, l: number, len: number): Promise<Buffer> {
    return (await this.decoded!.readBlock(this.digestOf(bi)!, len)) ?? this.decodeInWorker(pool, this.layers[l - 1]!, this.slotOf[bi]!, len);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    // Given, a read is one buffer (see readAs).
    return (await this.readAs(offset, length, false)).parts[0]!;
  }

  /** As read, but the blocks held in memory are lent, not given, a view of each (no copy): see PinnedBytes. */
  readPinned(offset: number, length: number): Promise<PinnedBytes> {
    return this.readAs(offset, length, true);
  }

  private async readAs(offset: number, length: number, lend: boolean): Promise<PinnedBytes> {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `read ${offset}+${length} is outside the disk (${this.size} bytes)`);
    }
    const first = Math.floor(offset / this.blockSize);
    const last = Math.floor((offset + Math.max(0, length - 1)) / this.blockSize);
    const { wholeBlocks, ahead } = length > 0 ? this.streams.note(offset, offset + length, this.inflight.has(first)) : { wholeBlocks: false, ahead: undefined };
    if (this.cache.enabled && ahead !== undefined) this.readAhead(ahead.from, ahead.to);
    if (this.recording !== undefined && length > 0) this.record(first, last);
    this.fills.noteClientRead();
    if (
      first === last &&
      length > 0 &&
      !wholeBlocks &&
      length <= RANDOM_READ_MAX &&
      this.pool &&
      this.layerOf[first] !== 0 &&
      !this.cache.has(first) &&
      !this.inflight.has(first) &&
      !this.loadsWholeFromDiskCache(first)
    ) {
      return unpinned(await this.readWithin(this.pool, first, offset - first * this.blockSize, length));
    }
    if (first === last && length > 0) {
      // Within one block: a view of the (cached or zero) block, no copy.
      const within = offset - first * this.blockSize;
      if (!lend) return unpinned((await this.readBlock(first)).subarray(within, within + length));
      return pinnedRange(await this.lendBlock(first), within, within + length);
    }
    if (length === 0) return unpinned(Buffer.alloc(0));
    if (lend) return this.lendAcross(offset, length, first, last);
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const bi = Math.floor(pos / this.blockSize);
      const within = pos - bi * this.blockSize;
      const n = Math.min(length - done, this.blockSize - within);
      if (this.layerOf[bi] !== 0) {
        // Copied out at once: lent, the block may be reused after.
        const lent = await this.lendBlock(bi);
        lent.data.copy(out, done, within, within + n);
        lent.release();
      }
      done += n;
    }
    return unpinned(out);
  }

  /** A read across blocks, lent: a view of each block, in order (loaded side by side), released together. */
  private async lendAcross(offset: number, length: number, first: number, last: number): Promise<PinnedBytes> {
    const got = await Promise.allSettled(Array.from({ length: last - first + 1 }, (_, i) => this.lendBlock(first + i)));
    const leases = got.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = got.find((r) => r.status === 'rejected');
    if (failed !== undefined) {
      for (const l of leases) l.release();
      throw failed.reason;
    }
    const end = offset + length;
    const parts = leases.map((l, i) => {
      const start = (first + i) * this.blockSize;
      return l.data.subarray(Math.max(offset, start) - start, Math.min(end, start + l.data.length) - start);
    });
    return pinnedParts(parts, leases);
  }

  /**
   * True when a small read of the block had better load it whole from the
   * disk cache (one read of a page-cached file, about 0.3 ms for 1 MiB) than
   * read its piece: while the memory cache has room to spare, the block's
   * next reads then find it in memory, with no trip through the thread pool.
   */
  private loadsWholeFromDiskCache(bi: number): boolean {
    const len = this.rawLength(bi);
    return this.decoded !== undefined && this.shared.hasRoomToSpare(len) && this.decoded.has(this.digestOf(bi)!, len);
  }

  /**
   * A small random read of a block nobody has decoded: only the frames that
   * cover it are decoded (when the block is stored in frames), and nothing is
   * cached. A block that is not framed comes back whole and is cached.
   */
  private async readWithin(pool: BlockWorkerPool, blockIndex: number, within: number, length: number): Promise<Buffer> {
    const layer = this.layers[this.layerOf[blockIndex]! - 1]!;
    const len = this.rawLength(blockIndex);
    this.cache.missed();
    const store = this.decoded;
    if (store !== undefined) {
      const kept = await store.readRange(this.digestOf(blockIndex)!, len, within, within + length);
      if (kept !== undefined) return kept;
    }
    const bounds = this.frameBounds.get(blockIndex);
    const r = await this.decodeRangeInWorker(pool, layer, this.slotOf[blockIndex]!, len, { from: within, to: within + length, bounds });
    if (r.bounds && !bounds) {
      this.frameBounds.set(blockIndex, r.bounds);
      if (this.frameBounds.size > FRAME_BOUNDS_KEPT) this.frameBounds.delete(this.frameBounds.keys().next().value as number);
    }
    if (r.start === 0 && r.data.length === len) this.cache.set(blockIndex, r.data);
    // After the client's answer, not beside it: the whole block is decoded for the caches in the background.
    else if (this.decoded !== undefined) this.fills.addFill(blockIndex);
    return r.data.subarray(within - r.start, within - r.start + length);
  }

  /**
   * Decodes `blocks` (the first PREFETCH_MAX_BLOCKS of them, in order) ahead of the
   * client, one at a time behind its own reads, into the memory cache and the
   * disk cache; blocks either already holds are skipped. Resolves when the
   * queue is done (or the disk closes).
   */
  prefetch(blocks: Iterable<number>): Promise<void> {
    const valid = [...blocks].filter((bi) => Number.isSafeInteger(bi) && bi >= 0 && bi < this.blockCount);
    return this.fills.addPrefetch(valid);
  }

  /** Starts noting the blocks clients read (again from nothing); `onFirst` runs at the first. */
  startRecording(onFirst?: () => void): void {
    this.recording = new ReadRecording(PREFETCH_MAX_BLOCKS, onFirst);
  }

  /** Ends the recording: the blocks read, in the order first read (empty if none ran). */
  stopRecording(): number[] {
    const r = this.recording;
    this.recording = undefined;
    return r?.blocks ?? [];
  }

  private record(first: number, last: number): void {
    for (let bi = first; bi <= last; bi++) if (this.layerOf[bi] !== 0) this.recording!.note(bi);
  }

  async close(): Promise<void> {
    this.closing = true;
    this.fills.stop();
    // Reads for workers may be in flight: the files must not be closed under them.
    if (this.decoding > 0) await new Promise<void>((r) => (this.idle = r));
    this.cache.close();
    await this.map.close();
  }
}

/** A block being loaded, and what its askers will do with it. */
interface Load {
  done: Promise<{ data: Buffer; block: CachedBlock | undefined }>;
  /** Askers lent the block: the entry is set with this many pins. */
  pins: number;
  /** Someone was given the block outright: its buffer is never reused. */
  given: boolean;
}
