import { join } from 'node:path';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import { unpinned, type PinnedBytes } from '../core/pinned-bytes.js';
import { localStorage, type Storage, type StorageFile } from '../storage/storage.js';
import { pushExtent, type BlockDevice, type Extent, type ReadableDisk } from './block-device.js';
import { MAP_HEADER, compactMap, encodeBatches, mapHeader, replayMap } from './overlay-map.js';

export const OVERLAY_DATA = 'overlay.data';
export const OVERLAY_MAP = 'overlay.map';

export interface OverlayOptions {
  /** Bytes per granule, a power of two ≥ 4096 (default 64 KiB). */
  readonly granule?: number | undefined;
  /** Where the overlay's two files live (default: the local file system). */
  readonly storage?: Storage | undefined;
}

/**
 * A copy-on-write overlay over a read-only disk (nbdkit's cow filter, made
 * persistent). Writes land in a sparse data file at their own offsets; a map
 * records which granules (64 KiB by default) the overlay holds. A write that
 * covers part of an unwritten granule first copies that granule from the
 * base, so a 4 KiB write copies 64 KiB, never a whole 1 MiB backup block.
 * The base is never written.
 *
 * Durability (docs/design.md §Overlay):
 * - flush() makes every write that completed before it was called durable.
 *   Flushes run one at a time in call order; a flush called while another
 *   runs joins the next one (group commit). Each fdatasyncs the data file,
 *   then appends the granules first written since the last flush to the map
 *   log and fdatasyncs it. Only then does mapEnd move.
 * - A failed map append or map sync puts its granules back: the next flush
 *   logs them again, at the same place.
 * - A failed data sync means the kernel may have dropped written pages:
 *   the overlay refuses every later write and flush (LFB_ERR_IO) until it
 *   is opened again, so no COMMIT or FLUSH reports success over lost data.
 * - A granule's first write holds the granule's lock (whole-granule writes
 *   too), so a concurrent fill from the base never lands over newer bytes.
 */
export class CowOverlay implements BlockDevice {
  readonly size: number;
  private writtenCount = 0;
  /** Granules first written since the last successful flush took them (each granule is marked once in its life). */
  private pending: number[] = [];
  private readonly locks = new Map<number, Promise<void>>();
  /** The flush running or last run (settled or not); the next one starts after it. */
  private flushTail: Promise<void> = Promise.resolve();
  /** A flush queued behind the running one, not yet started: later callers join it. */
  private queuedFlush: Promise<void> | undefined;
  /** Set when a data sync failed: written bytes may be lost, so nothing may be acknowledged any more. */
  private broken: LifeboatError | undefined;
  /** Set while the disk takes no writes (a migration's final copy and after): every write fails with it. */
  private sealed: LifeboatError | undefined;
  /** Writes in progress; seal() waits for them. */
  private readonly writing = new Set<Promise<unknown>>();
  /** Reads, writes and flushes in progress; close() waits for them. */
  private readonly active = new Set<Promise<unknown>>();
  private closed = false;
  /** Bytes read and written through the overlay since it was opened (whatever protocol asked): the session's I/O. */
  private io = { readBytes: 0, writtenBytes: 0 };

  private constructor(
    private readonly base: ReadableDisk,
    readonly dir: string,
    readonly granule: number,
    private readonly data: StorageFile,
    private readonly map: StorageFile,
    private readonly written: Uint8Array,
    private mapEnd: number,
  ) {
    this.size = base.size;
    for (const b of written) for (let x = b; x; x &= x - 1) this.writtenCount += 1;
  }

  /** Opens the overlay in `dir`, creating it if absent; replays its map (and compacts it when it has grown long). */
  static async open(base: ReadableDisk, dir: string, opts: OverlayOptions = {}): Promise<CowOverlay> {
    const granule = opts.granule ?? 64 * 1024;
    const storage = opts.storage ?? localStorage;
    if (granule < 4096 || (granule & (granule - 1)) !== 0) throw new RangeError(`granule ${granule} must be a power of two ≥ 4096`);
    await storage.mkdir(dir);
    const granules = Math.ceil(base.size / granule);
    const written = new Uint8Array(Math.ceil(granules / 8));
    const mapPath = join(dir, OVERLAY_MAP);
    let data: StorageFile | undefined;
    let map: StorageFile | undefined;
    try {
      data = await storage.open(join(dir, OVERLAY_DATA), 'create');
      if ((await data.size()) !== base.size) await data.truncate(base.size);
      map = await storage.open(mapPath, 'create');
      let mapEnd: number;
      if ((await map.size()) < MAP_HEADER) {
        // New (or never completed): a header, synced, and both names made durable.
        await map.pwrite(mapHeader(granule, base.size), 0);
        await map.truncate(MAP_HEADER);
        await map.sync();
        await storage.syncDir(dir);
        mapEnd = MAP_HEADER;
      } else {
        const log = await replayMap(map, mapPath, granule, base.size, written);
        mapEnd = log.end;
        let count = 0;
        for (const b of written) for (let x = b; x; x &= x - 1) count += 1;
        const compactBytes = MAP_HEADER + 16 * Math.ceil(count / 65536) + 8 * count;
        if (log.batches > 1 && log.bytes > 2 * compactBytes + 64 * 1024) {
          await map.close();
          map = undefined;
          mapEnd = await compactMap(storage, dir, mapPath, mapHeader(granule, base.size), written);
          map = await storage.open(mapPath, 'write');
        }
      }
      return new CowOverlay(base, dir, granule, data, map, written, mapEnd);
    } catch (err) {
      await data?.close().catch(() => undefined);
      await map?.close().catch(() => undefined);
      if (isLifeboatError(err)) throw err;
      throw new LifeboatError('LFB_ERR_IO', `open overlay ${dir}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  isWritten(g: number): boolean {
    return (this.written[g >> 3]! & (1 << (g & 7))) !== 0;
  }

  private mark(g: number): void {
    if (this.isWritten(g)) return;
    this.writtenCount += 1;
    this.written[g >> 3]! |= 1 << (g & 7);
    this.pending.push(g);
  }

  /** The byte ranges the overlay holds, in order (runs of written granules). */
  *writtenRanges(): Iterable<{ offset: number; length: number }> {
    const count = Math.ceil(this.size / this.granule);
    for (let g = 0; g < count; g++) {
      if (!this.isWritten(g)) continue;
      const start = g;
      while (g + 1 < count && this.isWritten(g + 1)) g++;
      const offset = start * this.granule;
      yield { offset, length: Math.min(this.size, (g + 1) * this.granule) - offset };
    }
  }

  /** Granules held by the overlay (kept as a count: GETATTR asks on every READ). */
  writtenGranules(): number {
    return this.writtenCount;
  }

  private check(offset: number, length: number): void {
    if (this.closed) throw new LifeboatError('LFB_ERR_INTERNAL', 'overlay is closed');
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `range ${offset}+${length} is outside the disk (${this.size} bytes)`);
    }
  }

  /** Runs `op` as one of the operations close() waits for. */
  private track<T>(op: Promise<T>): Promise<T> {
    this.active.add(op);
    const done = (): void => void this.active.delete(op);
    op.then(done, done);
    return op;
  }

  /** Bytes read and written through the overlay since it was opened (a read or write is counted when it is asked for and valid). */
  ioBytes(): { readonly readBytes: number; readonly writtenBytes: number } {
    return { ...this.io };
  }

  read(offset: number, length: number): Promise<Buffer> {
    try {
      this.check(offset, length);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    this.io.readBytes += length;
    if (this.writtenCount === 0 || this.untouched(offset, length)) {
      // Nothing of the range was written: the base's bytes as they are, no copy.
      return this.base.read(offset, length);
    }
    return this.track(this.readMixed(offset, length));
  }

  /** As read; bytes that are all the base's are lent by the base when it lends (no copy), the others are the caller's. */
  readPinned(offset: number, length: number): Promise<PinnedBytes> {
    const base = this.base;
    if (base.readPinned === undefined) return this.read(offset, length).then(unpinned);
    try {
      this.check(offset, length);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (this.writtenCount !== 0 && !this.untouched(offset, length)) return this.read(offset, length).then(unpinned);
    this.io.readBytes += length;
    return base.readPinned(offset, length);
  }

  private async readMixed(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    let pos = offset;
    while (pos < offset + length) {
      // One run of granules that all come from the same side.
      const g = Math.floor(pos / this.granule);
      const fromOverlay = this.isWritten(g);
      let end = Math.min(offset + length, (g + 1) * this.granule);
      while (end < offset + length && this.isWritten(Math.floor(end / this.granule)) === fromOverlay) end = Math.min(offset + length, end + this.granule);
      const n = end - pos;
      if (fromOverlay) await this.data.pread(out.subarray(pos - offset, pos - offset + n), pos);
      else (await this.base.read(pos, n)).copy(out, pos - offset);
      pos = end;
    }
    return out;
  }

  /** Written granules are data; the rest is whatever the base says (all data if it cannot say). */
  extents(offset: number, length: number): Extent[] {
    this.check(offset, length);
    const out: Extent[] = [];
    let pos = offset;
    const end = offset + length;
    while (pos < end && out.length < 4096) {
      const g = Math.floor(pos / this.granule);
      const to = Math.min(end, (g + 1) * this.granule);
      if (this.isWritten(g) || !this.base.extents) pushExtent(out, to - pos, false);
      else for (const e of this.base.extents(pos, to - pos)) pushExtent(out, e.length, e.hole);
      pos = to;
    }
    return out;
  }

  private untouched(offset: number, length: number): boolean {
    const last = Math.floor((offset + Math.max(0, length - 1)) / this.granule);
    for (let g = Math.floor(offset / this.granule); g <= last; g++) if (this.isWritten(g)) return false;
    return true;
  }

  write(offset: number, data: Buffer): Promise<void> {
    try {
      this.check(offset, data.length);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (this.broken) return Promise.reject(this.broken);
    if (this.sealed) return Promise.reject(this.sealed);
    this.io.writtenBytes += data.length;
    const w = this.track(this.writeGranules(offset, data));
    this.writing.add(w);
    const done = (): void => void this.writing.delete(w);
    w.then(done, done);
    return w;
  }

  /**
   * Refuses every later write with `reason` (errno EROFS: NFS3ERR_ROFS,
   * NBD EPERM) and resolves once the writes already under way have landed,
   * so what the overlay holds no longer changes. Reads and flushes go on.
   */
  async seal(reason: string): Promise<void> {
    this.sealed ??= new LifeboatError('LFB_ERR_MIGRATION', reason, { details: { errno: 'EROFS', dir: this.dir } });
    while (this.writing.size > 0) await Promise.allSettled([...this.writing]);
  }

  /** Takes writes again (a final copy that failed). */
  unseal(): void {
    this.sealed = undefined;
  }

  get isSealed(): boolean {
    return this.sealed !== undefined;
  }

  private async writeGranules(offset: number, data: Buffer): Promise<void> {
    let pos = offset;
    const end = offset + data.length;
    while (pos < end) {
      const g = Math.floor(pos / this.granule);
      const gStart = g * this.granule;
      const gEnd = Math.min(gStart + this.granule, this.size);
      const to = Math.min(end, gEnd);
      const piece = data.subarray(pos - offset, to - offset);
      if (this.isWritten(g)) await this.data.pwrite(piece, pos);
      else await this.firstWrite(g, gStart, gEnd, pos, piece);
      pos = to;
    }
  }

  /**
   * A write into a granule the overlay does not hold yet, under the granule's
   * lock: a partial one copies the granule from the base around it. The
   * granule is marked only once its bytes are in the data file.
   */
  private async firstWrite(g: number, gStart: number, gEnd: number, pos: number, piece: Buffer): Promise<void> {
    for (;;) {
      const busy = this.locks.get(g);
      if (!busy) break;
      await busy;
    }
    if (this.isWritten(g)) return this.data.pwrite(piece, pos);
    let release!: () => void;
    this.locks.set(g, new Promise<void>((r) => (release = r)));
    try {
      if (pos === gStart && pos + piece.length === gEnd) {
        await this.data.pwrite(piece, pos);
      } else {
        // A copy: the base may hand out a view of its shared block cache, which must never change.
        const whole = Buffer.from(await this.base.read(gStart, gEnd - gStart));
        piece.copy(whole, pos - gStart);
        await this.data.pwrite(whole, gStart);
      }
      this.mark(g);
    } finally {
      this.locks.delete(g);
      release();
    }
  }

  /** Makes every write that completed before this call durable (see the class comment). */
  flush(): Promise<void> {
    if (this.closed) return Promise.reject(new LifeboatError('LFB_ERR_INTERNAL', 'overlay is closed'));
    if (this.broken) return Promise.reject(this.broken);
    if (this.queuedFlush) return this.queuedFlush;
    const next = this.flushTail.then(
      () => this.flushNow(),
      () => this.flushNow(),
    );
    this.queuedFlush = next;
    this.flushTail = next;
    return this.track(next);
  }

  private async flushNow(): Promise<void> {
    // From here on, callers queue a new flush: this one may not cover their writes.
    this.queuedFlush = undefined;
    if (this.broken) throw this.broken;
    const gs = this.pending;
    this.pending = [];
    try {
      await this.data.datasync();
    } catch (err) {
      this.broken = new LifeboatError(
        'LFB_ERR_IO',
        `overlay ${this.dir}: written data may be lost (syncing the data file failed: ${err instanceof Error ? err.message : String(err)}); ` +
          'writes to this disk are refused until the server opens the session again',
        { cause: err, details: { dir: this.dir } },
      );
      throw this.broken;
    }
    if (gs.length === 0) return;
    const batches = encodeBatches(gs);
    try {
      await this.map.pwrite(batches, this.mapEnd);
      await this.map.datasync();
    } catch (err) {
      // Their data is durable; the next flush logs them again, over whatever this one left.
      for (const g of gs) this.pending.push(g);
      throw err;
    }
    this.mapEnd += batches.length;
  }

  /** Waits for every operation in progress, then closes the files; unflushed writes stay unlogged. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.active.size > 0) await Promise.allSettled([...this.active]);
    await Promise.allSettled([this.data.close(), this.map.close()]);
  }
}
