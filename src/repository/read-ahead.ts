/** Streams followed at once per disk. */
export const MAX_STREAMS = 8;
/** Blocks a stream has asked for ahead at most, however large the memory cache. */
export const MAX_DEPTH_BLOCKS = 32;
/**
 * A read that starts this close to where a stream's reads have reached
 * (before or after) continues it: requests in flight may arrive a little out
 * of order, and the copy-on-write overlay reads the backup around the
 * granules the guest wrote (64 KiB each), leaving gaps.
 */
export const STREAM_SLACK_BYTES = 128 * 1024;

interface Stream {
  /** The furthest byte the stream's reads have reached (exclusive). */
  end: number;
  /** Blocks before this one were asked for ahead of the stream (exclusive). */
  aheadTo: number;
  /** Blocks asked for ahead at the next step. */
  depth: number;
  /** Continued at least once: a reader, not a single read. */
  continued: boolean;
  /** For replacing the stream read least recently. */
  usedAt: number;
}

/** Blocks a read should have decoded ahead of it: [from, to). */
export interface AheadRange {
  readonly from: number;
  readonly to: number;
}

export interface ReadNote {
  /** The read continues a stream. */
  readonly sequential: boolean;
  /** The read should decode whole blocks (not only its frames): it continues a stream, or it is in or just after the block the disk's previous read ended in. */
  readonly wholeBlocks: boolean;
  /** Blocks to decode ahead of the reader, if any. */
  readonly ahead: AheadRange | undefined;
}

/**
 * The sequential readers of one disk, each followed on its own, so that two
 * clients reading at once (a guest booting while a migration copies the
 * disk, or nbdcopy's several connections) are each seen as sequential, not
 * as one random reader. A read that starts within STREAM_SLACK_BYTES of
 * where a stream's reads reached continues it; any other read starts a new
 * stream, which asks for nothing ahead until it continues once. A new stream
 * replaces first one that never continued (the random reads of any client),
 * so random reads, however many, do not push out a reader's stream.
 *
 * A stream asks for `minDepth` blocks ahead at first, and for more each time
 * it has read up to the middle of what it asked for. A reader that caught up
 * (its read found its block still decoding) has its window doubled, up to
 * `maxDepth`: where blocks take long to come (object storage, a busy disk)
 * the window grows until they are ready in time, and a reader slower than
 * its blocks decode never asks for more than it needs.
 */
export class ReadAheadStreams {
  private readonly streams: Stream[] = [];
  private clock = 0;
  /** The block the disk's previous read ended in. */
  private lastBlock = -2;

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
   * Windows that start at `minDepth` blocks and grow no further than lets
   * every stream's window fit in a quarter of this disk's memory cache of
   * `cacheBytes`: what blocks read from the disk cache may fill (block-cache.ts's
   * probation). In a small cache the first window is smaller, so that it and
   * the block being read fit in that quarter (one block at least).
   */
  static forCache(minDepth: number, cacheBytes: number, blockSize: number, blockCount: number): ReadAheadStreams {
    const quarter = Math.floor(cacheBytes / 4 / blockSize);
    const first = Math.max(1, Math.min(minDepth, quarter - 1));
    const fits = Math.floor(quarter / MAX_STREAMS);
    return new ReadAheadStreams(first, Math.max(first, Math.min(MAX_DEPTH_BLOCKS, fits)), blockSize, blockCount);
  }

  /** Notes a read of [offset, end) (bytes, end > offset); `caughtUp`: its first block was still decoding. */
  note(offset: number, end: number, caughtUp = false): ReadNote {
    this.clock += 1;
    const first = Math.floor(offset / this.blockSize);
    const last = Math.floor((end - 1) / this.blockSize);
    const nearPrevious = first === this.lastBlock || first === this.lastBlock + 1;
    this.lastBlock = last;
    const s = this.streams.find((x) => offset >= x.end - STREAM_SLACK_BYTES && offset <= x.end + STREAM_SLACK_BYTES);
    if (s === undefined) {
      this.start(end, last);
      return { sequential: false, wholeBlocks: nearPrevious, ahead: undefined };
    }
    // Being caught up counts once per block the stream enters.
    const entered = first > Math.floor((s.end - 1) / this.blockSize);
    s.usedAt = this.clock;
    s.continued = true;
    s.end = Math.max(s.end, end);
    if (caughtUp && entered) s.depth = Math.min(this.maxDepth, s.depth * 2);
    const reached = Math.floor((s.end - 1) / this.blockSize);
    const note = (ahead: AheadRange | undefined): ReadNote => ({ sequential: true, wholeBlocks: true, ahead });
    // Nothing asked for is left ahead (the first continuation, or a read larger than the window): ask from here.
    if (s.aheadTo <= reached + 1) s.aheadTo = reached + 1;
    // More than half of the window is still ahead of the reader: nothing new yet.
    else if (s.aheadTo - (reached + 1) > s.depth / 2) return note(undefined);
    const from = s.aheadTo;
    const to = Math.min(this.blockCount, reached + 1 + s.depth);
    if (to <= from) return note(undefined);
    s.aheadTo = to;
    return note({ from, to });
  }

  /** The streams followed now (for tests and stats). */
  get size(): number {
    return this.streams.length;
  }

  private start(end: number, last: number): void {
    const s: Stream = { end, aheadTo: last + 1, depth: this.minDepth, continued: false, usedAt: this.clock };
    if (this.streams.length < this.maxStreams) {
      this.streams.push(s);
      return;
    }
    // Out goes the least recently read of the streams that never continued, or of all when every one has.
    let out = -1;
    for (let i = 0; i < this.streams.length; i++) {
      const x = this.streams[i]!;
      const o = out >= 0 ? this.streams[out]! : undefined;
      if (o === undefined || (o.continued && !x.continued) || (o.continued === x.continued && x.usedAt < o.usedAt)) out = i;
    }
    this.streams[out] = s;
  }
}
