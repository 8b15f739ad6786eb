/**
 * A budget of bytes shared by all connections of a server: a request takes its
 * bytes before it is read and gives them back once its reply has reached the
 * kernel. Waiters are served first come, first served, so a large request is
 * not overtaken for ever by small ones.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: { n: number; resolve: () => void }[] = [];

  constructor(readonly max: number) {}

  /** Bytes taken now (for tests and logs). */
  get inUse(): number {
    return this.used;
  }

  /** Takes `n` bytes (at most the whole budget) if they are free now and nobody waits before. */
  tryTake(n: number): boolean {
    const k = Math.min(n, this.max);
    if (k !== 0 && (this.waiting.length > 0 || this.used + k > this.max)) return false;
    this.used += k;
    return true;
  }

  /** Takes `n` bytes (at most the whole budget), waiting until they are free. */
  take(n: number): Promise<void> {
    if (this.tryTake(n)) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push({ n: Math.min(n, this.max), resolve }));
  }

  /** Gives back what `take(n)` took. */
  give(n: number): void {
    this.used -= Math.min(n, this.max);
    while (this.waiting.length > 0 && this.used + this.waiting[0]!.n <= this.max) {
      const w = this.waiting.shift()!;
      this.used += w.n;
      w.resolve();
    }
  }
}
