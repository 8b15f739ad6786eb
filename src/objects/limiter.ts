/**
 * At most `limit` holders at a time; the rest wait in arrival order. Bounds
 * the requests an object store has in flight (and so the sockets and the
 * bodies held in memory) whatever its callers start at once.
 */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`a limit of ${limit} requests in flight: want at least 1`);
  }

  /** Resolves with the function that gives the place back (call it once, in a finally). */
  async acquire(): Promise<() => void> {
    if (this.active < this.limit) this.active += 1;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The place passes straight to the next waiter: `active` stays as it is.
      if (next !== undefined) next();
      else this.active -= 1;
    };
  }

  /** Holders now (for tests and diagnostics). */
  get inFlight(): number {
    return this.active;
  }
}
