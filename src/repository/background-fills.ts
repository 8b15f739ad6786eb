/**
 * While clients read, a fill is followed by a pause this many times as long
 * as it took: filling the caches for next time takes at most a quarter of the
 * time from clients reading now (on two cores, unpaced fills halved a cold
 * random reader's IOPS).
 */
const FILL_PACE = 3;
/**
 * While clients read, a keep (a block the disk cache dropped, written late)
 * is followed by a pause this many times as long as it took, write included:
 * at most a ninth of the time, so a reader that never pauses still has its
 * blocks kept, and a fast stream is hardly slowed.
 */
const KEEP_PACE = 8;
/** Clients that read within this long are reading now. */
const ACTIVE_MS = 100;
/** The longest pause (a fill held up by a storage stall says nothing about the next one). */
const MAX_PAUSE_MS = 1000;

/**
 * The blocks a disk decodes in the background, one at a time behind its
 * clients' own reads: first those a client read only in part (so the caches
 * have the whole block next time), paced while clients read, then a boot
 * prefetch's list (not paced: it must stay ahead of the guest), then the
 * blocks the disk cache dropped because its writes were pending (a fast
 * stream decodes faster than the writes keep up on two cores; writing them
 * all during the stream would slow it): at once while no client reads, at
 * most a ninth of the time while one does. The queues are bounded apart, so
 * a long prefetch never crowds out the fills.
 */
export class BackgroundFills {
  private readonly fills = new Set<number>();
  private readonly prefetches = new Set<number>();
  private readonly keeps = new Set<number>();
  /** Ends the drain's wait for a paused fill or a keep: something new may run now. */
  private wake: (() => void) | undefined;
  /** Who waits in addPrefetch() for the fills and prefetches to be done. */
  private waitingForFills: (() => void)[] = [];
  private running: Promise<void> | undefined;
  private stopped = false;
  /** When a client last read (performance.now()). */
  private clientReadAt = -Infinity;
  /** While clients read, no keep starts before this (performance.now()): the pause after the last one. */
  private keepNotBefore = -Infinity;
  /** No fill starts before this (performance.now()): the pause after the last one. */
  private fillNotBefore = -Infinity;

  constructor(
    /** Decodes block `bi` into the caches (its failure is the client's to meet, not ours). */
    private readonly fill: (bi: number) => Promise<unknown>,
    /** False when the block needs no decode (a hole, or a cache holds it already). */
    private readonly wanted: (bi: number) => boolean,
    private readonly maxFills: number,
    private readonly maxPrefetches: number,
    /** Writes block `bi` to the disk cache that dropped it (from memory, or decoded again); `paced`: settles once written, so the write counts in its time. */
    private readonly keep: (bi: number, paced: boolean) => Promise<unknown> = () => Promise.resolve(),
    private readonly maxKeeps = 0,
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

  /** Queues a block the disk cache dropped, to be written later (paced while clients read); dropped when the queue is full. */
  addKeep(bi: number): void {
    if (this.stopped || this.keeps.size >= this.maxKeeps) return;
    this.keeps.add(bi);
    this.start();
  }

  /** Queues a prefetch list (its first blocks, up to the bound); settles when the fills and prefetches are done (keeps may still wait). */
  addPrefetch(blocks: Iterable<number>): Promise<void> {
    for (const bi of blocks) {
      if (this.stopped || this.prefetches.size >= this.maxPrefetches) break;
      this.prefetches.add(bi);
    }
    const done = new Promise<void>((resolve) => this.waitingForFills.push(resolve));
    this.start();
    return done;
  }

  /** Nothing more is queued or started; the block being decoded finishes. */
  stop(): void {
    this.stopped = true;
    this.fills.clear();
    this.prefetches.clear();
    this.keeps.clear();
    this.wake?.();
  }

  private start(): void {
    this.running ??= this.drain();
    this.wake?.();
  }

  private async drain(): Promise<void> {
    // Yields first, so that `running` is set before the loop can end and clear it.
    await Promise.resolve();
    try {
      for (;;) {
        if (this.stopped) return;
        if (this.fills.size === 0 && this.prefetches.size === 0) this.fillsDone();
        const now = performance.now();
        // A paced fill waits; a prefetch does not wait for it; a keep waits for the clients to pause, or its pause to end.
        const fillDue = this.fills.size > 0 && now >= this.fillNotBefore;
        const quiet = now - this.clientReadAt >= ACTIVE_MS;
        const keepDue = this.keeps.size > 0 && (quiet || now >= this.keepNotBefore);
        const queue = fillDue ? this.fills : this.prefetches.size > 0 ? this.prefetches : keepDue ? this.keeps : undefined;
        if (queue === undefined) {
          if (this.fills.size === 0 && this.keeps.size === 0) return;
          const due = Math.min(
            this.fills.size > 0 ? this.fillNotBefore : Infinity,
            this.keeps.size > 0 ? Math.min(this.clientReadAt + ACTIVE_MS, this.keepNotBefore) : Infinity,
          );
          let timer: NodeJS.Timeout | undefined;
          await new Promise<void>((resolve) => {
            this.wake = resolve;
            timer = setTimeout(resolve, Math.max(0, due - now)).unref();
          });
          clearTimeout(timer);
          this.wake = undefined;
          continue;
        }
        const next = queue.values().next().value as number;
        queue.delete(next);
        if (queue === this.keeps) {
          const t0 = performance.now();
          await this.keep(next, !quiet).catch(() => undefined);
          const end = performance.now();
          if (end - this.clientReadAt < ACTIVE_MS) this.keepNotBefore = end + Math.min(MAX_PAUSE_MS, (end - t0) * KEEP_PACE);
          continue;
        }
        if (!this.wanted(next)) continue;
        const t0 = performance.now();
        await this.fill(next).catch(() => undefined);
        const end = performance.now();
        if (queue === this.fills && end - this.clientReadAt < ACTIVE_MS) this.fillNotBefore = end + Math.min(MAX_PAUSE_MS, (end - t0) * FILL_PACE);
      }
    } finally {
      this.running = undefined;
      this.fillsDone();
    }
  }

  private fillsDone(): void {
    const waiting = this.waitingForFills;
    this.waitingForFills = [];
    for (const resolve of waiting) resolve();
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
