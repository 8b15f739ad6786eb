/**
 * Where each byte of a file kept on objects is: sorted, non-overlapping
 * extents, each either in a pack (an immutable object, at `packOffset`) or
 * written since the last flush and still in memory (`data`). Bytes no extent
 * covers, below the file's size, are a hole and read as zeros.
 *
 * An extent record is replaced, never trimmed, when a write or truncate cuts
 * it; the one change made in place is a flush moving it from memory to its
 * pack (`packed`), which does not change its bytes. So a flush can take the
 * records in memory at one moment and write them while later writes go on.
 */
export interface Extent {
  /** First byte in the file. */
  readonly offset: number;
  readonly length: number;
  /** The pack holding the bytes, once flushed. */
  pack: string | undefined;
  packOffset: number;
  /** The bytes while in memory; undefined once in a pack. */
  data: Buffer | undefined;
}

export function inMemory(offset: number, data: Buffer): Extent {
  return { offset, length: data.length, pack: undefined, packOffset: 0, data };
}

export function inPack(offset: number, length: number, pack: string, packOffset: number): Extent {
  return { offset, length, pack, packOffset, data: undefined };
}

/** The part [from, to) of `e` (file offsets), as a new record. */
function cut(e: Extent, from: number, to: number): Extent {
  const skip = from - e.offset;
  return e.data !== undefined ? inMemory(from, e.data.subarray(skip, skip + (to - from))) : inPack(from, to - from, e.pack!, e.packOffset + skip);
}

export class ExtentMap {
  private extents: Extent[];

  constructor(
    extents: Extent[] = [],
    /** The file's length: may run past the last extent (a hole at the end). */
    public size = 0,
  ) {
    this.extents = extents;
  }

  /** Index of the first extent that ends after `offset`. */
  private firstEndingAfter(offset: number): number {
    let lo = 0;
    let hi = this.extents.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.extents[mid]!;
      if (e.offset + e.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Puts `e` in place of whatever covered its range. */
  place(e: Extent): void {
    const end = e.offset + e.length;
    const i = this.firstEndingAfter(e.offset);
    let j = i;
    while (j < this.extents.length && this.extents[j]!.offset < end) j++;
    const replacing: Extent[] = [];
    const first = j > i ? this.extents[i]! : undefined;
    const last = j > i ? this.extents[j - 1]! : undefined;
    if (first !== undefined && first.offset < e.offset) replacing.push(cut(first, first.offset, e.offset));
    replacing.push(e);
    if (last !== undefined && last.offset + last.length > end) replacing.push(cut(last, end, last.offset + last.length));
    this.extents.splice(i, j - i, ...replacing);
    if (end > this.size) this.size = end;
  }

  truncate(length: number): void {
    const i = this.firstEndingAfter(length);
    const tail = this.extents.slice(i);
    this.extents.length = i;
    const first = tail[0];
    if (first !== undefined && first.offset < length) this.extents.push(cut(first, first.offset, length));
    this.size = length;
  }

  /** The extents overlapping [offset, offset + length), cut to it. */
  within(offset: number, length: number): Extent[] {
    const end = offset + length;
    const out: Extent[] = [];
    for (let i = this.firstEndingAfter(offset); i < this.extents.length && this.extents[i]!.offset < end; i++) {
      const e = this.extents[i]!;
      out.push(e.offset >= offset && e.offset + e.length <= end ? e : cut(e, Math.max(offset, e.offset), Math.min(end, e.offset + e.length)));
    }
    return out;
  }

  /** The records now in memory (for a flush). */
  unflushed(): Extent[] {
    return this.extents.filter((e) => e.data !== undefined);
  }

  /**
   * `records` (from unflushed()) are now in `pack`, one after the other from
   * its start: each is moved from memory to it in place, and neighbours join.
   */
  markFlushed(records: readonly Extent[], pack: string): void {
    let at = 0;
    for (const r of records) {
      r.pack = pack;
      r.packOffset = at;
      r.data = undefined;
      at += r.length;
    }
    this.coalesce();
  }

  /** Every record as it is now (a commit's view, taken after its flush). */
  all(): readonly Extent[] {
    return this.extents.slice();
  }

  /** Joins neighbours that are contiguous in the file and in one pack (sequential writes flushed together). */
  coalesce(): void {
    const out: Extent[] = [];
    for (const e of this.extents) {
      const last = out[out.length - 1];
      if (
        last !== undefined &&
        last.pack !== undefined &&
        last.pack === e.pack &&
        last.offset + last.length === e.offset &&
        last.packOffset + last.length === e.packOffset
      )
        out[out.length - 1] = inPack(last.offset, last.length + e.length, last.pack, last.packOffset);
      else out.push(e);
    }
    this.extents = out;
  }
}
