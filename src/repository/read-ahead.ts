/** Streams followed at once per disk; a new one replaces the one read least recently. */
export const MAX_STREAMS = 8;
/** Blocks a stream has asked for ahead at most, however large the memory cache. */
export const MAX_DEPTH_BLOCKS = 32;

interface Stream {
  /** Where the stream's latest read ended (byte offset, exclusive). */
  end: number;
  /** The last block the stream has read into. */
  last: number;
  /** Blocks before this one were asked for ahead of the stream (exclusive). */
  aheadTo: number;
  /** Blocks asked for ahead at the next step. */
  depth: number;
  /** For replacing the stream read least recently. */
  usedAt: number;
}

/** Blocks a read should have decoded ahead of it: [from, to). */
export interface AheadRange {
  readonly from: number;
  readonly to: number;
}

/**
 * The sequential readers of one disk, each followed on its own, so that two
 * clients reading at once (a guest booting while a migration copies the
 * disk, or nbdcopy's several connections) are each seen as sequential, not
 * as one random reader. A read that starts exactly where a stream's last
 * read ended continues it; any other read starts a new stream, which asks
 * for nothing ahead until it continues once. (Exact, so a random reader is
 * almost never taken for a sequential one, however many streams there are:
 * a false one would decode whole blocks it does not read.)
 *
 * A stream asks for `minDepth` blocks ahead at first, and for more each time
 * it has read up to the middle of what it asked for. A reader that caught up
 * (its read found its block still decoding) has its window doubled, up to
 * `maxDepth`: where blocks take long to come (object storage, a busy disk)
 * the window grows until they are ready in time, and a reader slower than
 * its blocks decode never asks for more than it needs. The caller bounds
 * `maxDepth` by what its memory cache holds.
 */
export class ReadAheadStreams {
  private readonly streams: Stream[] = [];
  private clock = 0;

  constructor(
    readonly minDepth: number,
    readonly maxDepth: number,
    private readonly blockSize: number,
    private readonly blockCount: number,
    private readonly maxStreams = MAX_STREAMS,
  ) {
    if (!(minDepth >= 1 && maxDepth >= minDepth)) throw new RangeError(`read-ahead depth ${minDepth}..${maxDepth}`);
  }

  /**
   * Streams whose windows start at `minDepth` blocks and together fit in a
   * quarter of a memory cache of `cacheBytes`, so read-ahead never evicts
   * the blocks it decoded before they are read.
   */
  static forCache(minDepth: number, cacheBytes: number, blockSize: number, blockCount: number): ReadAheadStreams {
    const fits = Math.floor(cacheBytes / 4 / MAX_STREAMS / blockSize);
    return new ReadAheadStreams(minDepth, Math.max(minDepth, Math.min(MAX_DEPTH_BLOCKS, fits)), blockSize, blockCount);
  }

  /**
   * Notes a read of [offset, end) (bytes, end > offset); `caughtUp`: its
   * first block was still decoding (counted once per block). Returns whether it continues a stream
   * (sequential), and the blocks to decode ahead of it, if any.
   */
  note(offset: number, end: number, caughtUp = false): { sequential: boolean; ahead: AheadRange | undefined } {
    this.clock += 1;
    const last = Math.floor((end - 1) / this.blockSize);
    const s = this.streams.find((x) => x.end === offset);
    if (s === undefined) {
      this.start(end, last);
      return { sequential: false, ahead: undefined };
    }
    s.usedAt = this.clock;
    s.end = end;
    const entered = Math.floor(offset / this.blockSize) > s.last;
    s.last = last;
    if (caughtUp && entered) s.depth = Math.min(this.maxDepth, s.depth * 2);
    // Nothing asked for is left ahead (the first continuation, or a read larger than the window): ask from here.
    if (s.aheadTo <= last + 1) s.aheadTo = last + 1;
    // More than half of the window is still ahead of the reader: nothing new yet.
    else if (s.aheadTo - (last + 1) > s.depth / 2) return { sequential: true, ahead: undefined };
    const from = s.aheadTo;
    const to = Math.min(this.blockCount, last + 1 + s.depth);
    if (to <= from) return { sequential: true, ahead: undefined };
    s.aheadTo = to;
    return { sequential: true, ahead: { from, to } };
  }

  /** The streams followed now (for tests and stats). */
  get size(): number {
    return this.streams.length;
  }

  private start(end: number, last: number): void {
    const s: Stream = { end, last, aheadTo: last + 1, depth: this.minDepth, usedAt: this.clock };
    if (this.streams.length < this.maxStreams) {
      this.streams.push(s);
      return;
    }
    let oldest = 0;
    for (let i = 1; i < this.streams.length; i++) if (this.streams[i]!.usedAt < this.streams[oldest]!.usedAt) oldest = i;
    this.streams[oldest] = s;
  }
}
