/**
 * While clients read, a fill is followed by a pause this many times as long
 * as it took: filling the caches for next time takes at most a quarter of the
 * time from clients reading now (on two cores, unpaced fills halved a cold
 * random reader's IOPS).
 */
const FILL_PACE = 3;
/** Clients that read within this long are reading now. */
const ACTIVE_MS = 100;
/** The longest pause (a fill held up by a storage stall says nothing about the next one). */
const MAX_PAUSE_MS = 1000;

/**
 * The blocks a disk decodes in the background, one at a time behind its
 * clients' own reads: first those a client read only in part (so the caches
 * have the whole block next time), paced while clients read, then a boot
 * prefetch's list (not paced: it must stay ahead of the guest). The two
 * queues are bounded apart, so a long prefetch never crowds out the fills.
 */
export class BackgroundFills {
  private readonly fills = new Set<number>();
  private readonly prefetches = new Set<number>();
  private running: Promise<void> | undefined;
  private stopped = false;
  /** When a client last read (performance.now()). */
  private clientReadAt = -Infinity;
  /** No fill starts before this (performance.now()): the pause after the last one. */
  private fillNotBefore = -Infinity;

  constructor(
    /** Decodes block `bi` into the caches (its failure is the client's to meet, not ours). */
    private readonly fill: (bi: number) => Promise<unknown>,
    /** False when the block needs no decode (a hole, or a cache holds it already). */
    private readonly wanted: (bi: number) => boolean,
    private readonly maxFills: number,
    private readonly maxPrefetches: number,
  ) {}

  /** A client read: fills slow down for a while. */
  noteClientRead(): void {
    this.clientReadAt = performance.now();
  }

  /** Queues a block read in part; dropped when the queue is full. */
  addFill(bi: number): void {
    if (this.stopped || this.fills.size >= this.maxFills) return;
    this.fills.add(bi);
    this.start();
  }

  /** Queues a prefetch list (its first blocks, up to the bound); settles when both queues are done. */
  async addPrefetch(blocks: Iterable<number>): Promise<void> {
    for (const bi of blocks) {
      if (this.stopped || this.prefetches.size >= this.maxPrefetches) break;
      this.prefetches.add(bi);
    }
    this.start();
    await this.running;
  }

  /** Nothing more is queued or started; the block being decoded finishes. */
  stop(): void {
    this.stopped = true;
    this.fills.clear();
    this.prefetches.clear();
  }

  private start(): void {
    this.running ??= this.drain();
  }

  private async drain(): Promise<void> {
    // Yields first, so that `running` is set before the loop can end and clear it.
    await Promise.resolve();
    try {
      for (;;) {
        if (this.stopped) return;
        // A paced fill waits; a prefetch does not wait for it.
        const fillDue = this.fills.size > 0 && performance.now() >= this.fillNotBefore;
        const queue = fillDue || this.prefetches.size === 0 ? this.fills : this.prefetches;
        const next = queue.values().next();
        if (next.done === true) return;
        if (queue === this.fills && !fillDue) {
          await new Promise((r) => setTimeout(r, this.fillNotBefore - performance.now()).unref());
          continue;
        }
        queue.delete(next.value);
        if (!this.wanted(next.value)) continue;
        const t0 = performance.now();
        await this.fill(next.value).catch(() => undefined);
        const end = performance.now();
        if (queue === this.fills && end - this.clientReadAt < ACTIVE_MS) this.fillNotBefore = end + Math.min(MAX_PAUSE_MS, (end - t0) * FILL_PACE);
      }
    } finally {
      this.running = undefined;
    }
  }
}

/**
 * The blocks a disk's clients read, in the order first read, once each, up to
 * `max`; `onFirst` runs at the first one (a boot's window starts when the
 * guest reads, not when the session is published).
 */
export class ReadRecording {
  readonly blocks: number[] = [];
  private readonly seen = new Set<number>();

  constructor(
    private readonly max: number,
    private readonly onFirst: (() => void) | undefined,
  ) {}

  note(bi: number): void {
    if (this.blocks.length >= this.max || this.seen.has(bi)) return;
    if (this.blocks.length === 0) this.onFirst?.();
    this.seen.add(bi);
    this.blocks.push(bi);
  }
}
