import { constants as fsc } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError, fromFsError } from '../core/errors.js';
import { sha256 } from '../format/checksum.js';
import { pushExtent, type BlockDevice, type Extent, type ReadableDisk } from './block-device.js';

export const OVERLAY_DATA = 'overlay.data';
export const OVERLAY_MAP = 'overlay.map';
const MAP_MAGIC = 0x4c464f4d; // "LFOM"
const BATCH_MAGIC = 0x4c46424d; // "LFBM"
const MAP_HEADER = 32;

/**
 * A copy-on-write overlay over a read-only disk (nbdkit's cow filter, made
 * persistent). Writes land in a sparse data file at their own offsets;
 * a map records which granules (64 KiB by default) the overlay holds. A write
 * that covers part of an unwritten granule first copies that granule from the
 * base — so a 4 KiB write copies 64 KiB, never a whole 1 MiB backup block.
 *
 * Durability: the map is an append-only log of checksummed batches of granule
 * numbers. flush() fsyncs the data file, then appends the granules written
 * since the last flush and fsyncs the log: after a crash, every granule of a
 * completed flush is there with its data, and a torn last batch is ignored.
 * The base is never written.
 */
export class CowOverlay implements BlockDevice {
  readonly size: number;
  private readonly written: Uint8Array;
  private readonly pending = new Set<number>();
  private writtenCount = 0;
  private readonly locks = new Map<number, Promise<void>>();
  private mapEnd: number;
  private closed = false;

  private constructor(
    private readonly base: ReadableDisk,
    readonly dir: string,
    readonly granule: number,
    private readonly data: FileHandle,
    private readonly map: FileHandle,
    written: Uint8Array,
    mapEnd: number,
  ) {
    this.size = base.size;
    this.written = written;
    this.mapEnd = mapEnd;
  }

  /** Opens the overlay in `dir`, creating it if absent; replays its map. */
  static async open(base: ReadableDisk, dir: string, opts: { granule?: number } = {}): Promise<CowOverlay> {
    const granule = opts.granule ?? 64 * 1024;
    if (granule < 4096 || (granule & (granule - 1)) !== 0) throw new RangeError(`granule ${granule} must be a power of two ≥ 4096`);
    await mkdir(dir, { recursive: true });
    const granules = Math.ceil(base.size / granule);
    const written = new Uint8Array(Math.ceil(granules / 8));
    let data: FileHandle | undefined;
    let map: FileHandle | undefined;
    try {
      data = await open(join(dir, OVERLAY_DATA), fsc.O_RDWR | fsc.O_CREAT, 0o600);
      if ((await data.stat()).size !== base.size) await data.truncate(base.size);
      map = await open(join(dir, OVERLAY_MAP), fsc.O_RDWR | fsc.O_CREAT, 0o600);
      const bytes = await map.readFile();
      let mapEnd: number;
      if (bytes.length < MAP_HEADER) {
        const h = Buffer.alloc(MAP_HEADER);
        h.writeUInt32LE(MAP_MAGIC, 0);
        h.writeUInt32LE(granule, 4);
        h.writeBigUInt64LE(BigInt(base.size), 8);
        await map.write(h, 0, MAP_HEADER, 0);
        await map.truncate(MAP_HEADER);
        await map.sync();
        mapEnd = MAP_HEADER;
      } else {
        if (bytes.readUInt32LE(0) !== MAP_MAGIC) throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${join(dir, OVERLAY_MAP)}: not an overlay map`);
        if (bytes.readUInt32LE(4) !== granule || Number(bytes.readBigUInt64LE(8)) !== base.size) {
          throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${join(dir, OVERLAY_MAP)}: made for another disk size or granule`);
        }
        mapEnd = replay(bytes, written, granules);
      }
      const ov = new CowOverlay(base, dir, granule, data, map, written, mapEnd);
      for (const b of written) for (let x = b; x; x &= x - 1) ov.writtenCount += 1;
      return ov;
    } catch (err) {
      await data?.close();
      await map?.close();
      throw fromFsError(err, 'open overlay', dir);
    }
  }

  isWritten(g: number): boolean {
    return (this.written[g >> 3]! & (1 << (g & 7))) !== 0;
  }

  private mark(g: number): void {
    if (!this.isWritten(g)) this.writtenCount += 1;
    this.written[g >> 3]! |= 1 << (g & 7);
    this.pending.add(g);
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
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `range ${offset}+${length} is outside the disk (${this.size} bytes)`);
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length);
    if (this.writtenCount === 0 || this.untouched(offset, length)) {
      // Nothing of the range was written: the base's bytes as they are, no copy.
      return this.base.read(offset, length);
    }
    const out = Buffer.alloc(length);
    let pos = offset;
    while (pos < offset + length) {
      // One run of granules that all come from the same side.
      const g = Math.floor(pos / this.granule);
      const fromOverlay = this.isWritten(g);
      let end = Math.min(offset + length, (g + 1) * this.granule);
      while (end < offset + length && this.isWritten(Math.floor(end / this.granule)) === fromOverlay) end = Math.min(offset + length, end + this.granule);
      const n = end - pos;
      if (fromOverlay) await this.data.read(out, pos - offset, n, pos);
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

  async write(offset: number, data: Buffer): Promise<void> {
    this.check(offset, data.length);
    let pos = offset;
    const end = offset + data.length;
    while (pos < end) {
      const g = Math.floor(pos / this.granule);
      const gStart = g * this.granule;
      const gEnd = Math.min(gStart + this.granule, this.size);
      const to = Math.min(end, gEnd);
      const piece = data.subarray(pos - offset, to - offset);
      if (this.isWritten(g) || (pos === gStart && to === gEnd)) {
        await this.data.write(piece, 0, piece.length, pos);
        if (!this.isWritten(g)) this.mark(g);
      } else {
        await this.fill(g, gStart, gEnd, pos, piece);
      }
      pos = to;
    }
  }

  /** First write into part of a granule: copy it from the base, apply the write, then mark it. */
  private async fill(g: number, gStart: number, gEnd: number, pos: number, piece: Buffer): Promise<void> {
    for (;;) {
      const busy = this.locks.get(g);
      if (!busy) break;
      await busy;
    }
    if (this.isWritten(g)) {
      await this.data.write(piece, 0, piece.length, pos);
      return;
    }
    let release!: () => void;
    this.locks.set(g, new Promise<void>((r) => (release = r)));
    try {
      // A copy: the base may hand out a view of its shared block cache, which must never change.
      const whole = Buffer.from(await this.base.read(gStart, gEnd - gStart));
      piece.copy(whole, pos - gStart);
      await this.data.write(whole, 0, whole.length, gStart);
      this.mark(g);
    } finally {
      this.locks.delete(g);
      release();
    }
  }

  async flush(): Promise<void> {
    if (this.pending.size === 0) {
      await this.data.sync();
      return;
    }
    const gs = [...this.pending];
    this.pending.clear();
    await this.data.sync();
    const batch = Buffer.alloc(16 + 8 * gs.length);
    batch.writeUInt32LE(BATCH_MAGIC, 0);
    batch.writeUInt32LE(gs.length, 4);
    gs.forEach((g, i) => batch.writeBigUInt64LE(BigInt(g), 16 + 8 * i));
    sha256(batch.subarray(16)).copy(batch, 8, 0, 8);
    await this.map.write(batch, 0, batch.length, this.mapEnd);
    await this.map.sync();
    this.mapEnd += batch.length;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.data.close();
    await this.map.close();
  }
}

/** Applies every whole, valid batch of the log; returns where the valid log ends. */
function replay(bytes: Buffer, written: Uint8Array, granules: number): number {
  let at = MAP_HEADER;
  while (at + 16 <= bytes.length) {
    if (bytes.readUInt32LE(at) !== BATCH_MAGIC) break;
    const n = bytes.readUInt32LE(at + 4);
    const body = 16 + 8 * n;
    if (at + body > bytes.length) break;
    const list = bytes.subarray(at + 16, at + body);
    if (
      !sha256(list)
        .subarray(0, 8)
        .equals(bytes.subarray(at + 8, at + 16))
    )
      break;
    for (let i = 0; i < n; i++) {
      const g = Number(list.readBigUInt64LE(8 * i));
      if (g < granules) written[g >> 3]! |= 1 << (g & 7);
    }
    at += body;
  }
  return at;
}
