import { NbdClient, describeNbd, type NbdAddress } from '../nbd/nbd-client.js';
import { BASE_ALLOCATION, NBD_STATE_HOLE, NBD_STATE_ZERO } from '../nbd/wire.js';
import type { DiskSource } from './raw-disk-source.js';
import { RangeSet } from './range-set.js';

const DIRTY = 1;

export const dirtyBitmapContext = (bitmap: string): string => `qemu:dirty-bitmap:${bitmap}`;

/**
 * A disk read over NBD: an export of any NBD server, or an image file served
 * by a private qemu-nbd. The allocation map (`base:allocation`) is fetched at
 * open, so holes and zero ranges are never read; with a dirty bitmap, so is
 * the map of what changed, and unchanged blocks are not read either. Reads
 * may overlap: the client keeps them in flight on one connection, all of
 * them or as many as the source was opened with.
 */
export class NbdDiskSource implements DiskSource {
  private constructor(
    readonly path: string,
    private readonly client: NbdClient,
    private readonly zeros: RangeSet,
    /** Ranges written since the bitmap's point; undefined without a (trustworthy) bitmap. */
    readonly dirty: RangeSet | undefined,
    private readonly onClose: (() => Promise<void>) | undefined,
    /** Why the dirty bitmaps asked for cannot be used (every block is then read). */
    readonly cbtProblem: string | undefined,
    private readonly readsInFlight: number,
  ) {}

  /** Reads sent and not yet answered (a read that ends hands its place to the first waiting one, if any). */
  private sent = 0;
  /** Reads waiting for a place, first come first sent. */
  private readonly waiting: (() => void)[] = [];

  get size(): number {
    return this.client.size;
  }

  /**
   * Connects and fetches the maps. `dirtyBitmaps`: a bitmap and its check
   * twin, which must agree; if they do not (or are not exposed), the source
   * has no change map and says why in `cbtProblem`. `readsInFlight`: at most
   * this many reads are sent at once (default: no limit); the rest wait in order.
   */
  static async open(
    path: string,
    address: NbdAddress,
    opts: { dirtyBitmaps?: readonly string[]; onClose?: () => Promise<void>; readsInFlight?: number } = {},
  ): Promise<NbdDiskSource> {
    const limit = opts.readsInFlight ?? Infinity;
    if (!(limit >= 1)) throw new RangeError(`readsInFlight must be at least 1, not ${opts.readsInFlight}`);
    const bitmaps = opts.dirtyBitmaps ?? [];
    const client = await NbdClient.connect(address, { metaContexts: [BASE_ALLOCATION, ...bitmaps.map(dirtyBitmapContext)] });
    try {
      // The maps are asked for together: their requests share the connection.
      const rangesOf = async (context: string, flags: number): Promise<RangeSet> =>
        new RangeSet((await client.mapAll(context)).filter((e) => e.flags & flags).map((e) => [e.offset, e.offset + e.length] as const));
      let problem = bitmaps
        .filter((b) => !client.contexts.has(dirtyBitmapContext(b)))
        .map((b) => `${describeNbd(address)} does not expose dirty bitmap "${b}"`)[0];
      const [zeros, ...maps] = await Promise.all([
        client.contexts.has(BASE_ALLOCATION) ? rangesOf(BASE_ALLOCATION, NBD_STATE_HOLE | NBD_STATE_ZERO) : new RangeSet([]),
        ...(problem === undefined ? bitmaps.map((b) => rangesOf(dirtyBitmapContext(b), DIRTY)) : []),
      ]);
      let dirty: RangeSet | undefined;
      if (maps.length > 0) {
        if (maps.some((m) => !m.equals(maps[0]!))) problem = `dirty bitmaps ${bitmaps.join(' and ')} of ${path} disagree (one was cleared or replaced)`;
        else dirty = maps[0]!;
      }
      return new NbdDiskSource(path, client, zeros, dirty, opts.onClose, problem, limit);
    } catch (err) {
      await client.close();
      await opts.onClose?.();
      throw err;
    }
  }

  isHole(offset: number, length: number): boolean {
    return this.zeros.covers(offset, length);
  }

  /** With a dirty bitmap: whether nothing in the range was written since the bitmap's point. */
  isUnchanged(offset: number, length: number): boolean {
    return this.dirty !== undefined && !this.dirty.intersects(offset, length);
  }

  async read(into: Buffer, offset: number): Promise<number> {
    const n = Math.max(0, Math.min(into.length, this.size - offset));
    // The place passes straight to the next waiting read: a read called between this one's end and the waiter's
    // wake-up must not find it free, or one more would be sent than the limit and the newcomer would go first.
    if (this.sent < this.readsInFlight) this.sent += 1;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      await this.client.read(into.subarray(0, n), offset);
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.sent -= 1;
    }
    return n;
  }

  async close(): Promise<void> {
    await this.client.close();
    await this.onClose?.();
  }
}
