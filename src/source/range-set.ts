/**
 * Sorted, disjoint byte ranges [start, end), built once from a list of
 * extents: the zero map and the dirty map of an NBD source. Memory is in
 * proportion to the number of ranges (fragmentation), never to the disk size.
 */
export class RangeSet {
  private readonly starts: Float64Array;
  private readonly ends: Float64Array;

  constructor(ranges: Iterable<readonly [number, number]>) {
    const merged: [number, number][] = [];
    for (const [s, e] of [...ranges].filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0])) {
      const last = merged[merged.length - 1];
      if (last && s <= last[1]) last[1] = Math.max(last[1], e);
      else merged.push([s, e]);
    }
    this.starts = Float64Array.from(merged.map((r) => r[0]));
    this.ends = Float64Array.from(merged.map((r) => r[1]));
  }

  get count(): number {
    return this.starts.length;
  }

  /** Total bytes covered. */
  get bytes(): number {
    let n = 0;
    for (let i = 0; i < this.starts.length; i++) n += this.ends[i]! - this.starts[i]!;
    return n;
  }

  /** Index of the last range starting at or before `at`, or -1. */
  private before(at: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! <= at) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** Whether [offset, offset+length) lies inside one range. */
  covers(offset: number, length: number): boolean {
    const i = this.before(offset);
    return i >= 0 && this.ends[i]! >= offset + length;
  }

  /** Whether [offset, offset+length) touches any range. */
  intersects(offset: number, length: number): boolean {
    const i = this.before(offset + length - 1);
    return i >= 0 && this.ends[i]! > offset;
  }

  /** Whether two sets cover exactly the same bytes. */
  equals(other: RangeSet): boolean {
    if (other.count !== this.count) return false;
    for (let i = 0; i < this.count; i++) if (other.starts[i] !== this.starts[i] || other.ends[i] !== this.ends[i]) return false;
    return true;
  }
}
