import { NbdClient, describeNbd, type NbdAddress } from '../nbd/nbd-client.js';
import { BASE_ALLOCATION, NBD_STATE_HOLE, NBD_STATE_ZERO } from '../nbd/wire.js';
import type { DiskSource } from './raw-disk-source.js';
import { RangeSet } from './range-set.js';

const DIRTY = 1;
/** Reads kept in flight ahead of the consumer (the pipeline asks for one block at a time). */
const READ_AHEAD = 8;

export const dirtyBitmapContext = (bitmap: string): string => `qemu:dirty-bitmap:${bitmap}`;

/**
 * A disk read over NBD: an export of any NBD server, or an image file served
 * by a private qemu-nbd. The allocation map (`base:allocation`) is fetched at
 * open, so holes and zero ranges are never read; with a dirty bitmap, so is
 * the map of what changed, and unchanged blocks are not read either.
 */
export class NbdDiskSource implements DiskSource {
  private readonly ahead = new Map<number, Promise<Buffer>>();

  private constructor(
    readonly path: string,
    private readonly client: NbdClient,
    private readonly zeros: RangeSet,
    /** Ranges written since the bitmap's point; undefined without a (trustworthy) bitmap. */
    readonly dirty: RangeSet | undefined,
    private readonly onClose: (() => Promise<void>) | undefined,
    /** Why the dirty bitmaps asked for cannot be used (every block is then read). */
    readonly cbtProblem: string | undefined,
  ) {}

  get size(): number {
    return this.client.size;
  }

  /**
   * Connects and fetches the maps. `dirtyBitmaps`: a bitmap and its check
   * twin, which must agree; if they do not (or are not exposed), the source
   * has no change map and says why in `cbtProblem`.
   */
  static async open(path: string, address: NbdAddress, opts: { dirtyBitmaps?: readonly string[]; onClose?: () => Promise<void> } = {}): Promise<NbdDiskSource> {
    const bitmaps = opts.dirtyBitmaps ?? [];
    const client = await NbdClient.connect(address, { metaContexts: [BASE_ALLOCATION, ...bitmaps.map(dirtyBitmapContext)] });
    try {
      let zeros = new RangeSet([]);
      if (client.contexts.has(BASE_ALLOCATION)) {
        zeros = new RangeSet((await client.mapAll(BASE_ALLOCATION)).filter((e) => e.flags & (NBD_STATE_HOLE | NBD_STATE_ZERO)).map((e) => [e.offset, e.offset + e.length] as const));
      }
      let dirty: RangeSet | undefined;
      let problem = bitmaps.filter((b) => !client.contexts.has(dirtyBitmapContext(b))).map((b) => `${describeNbd(address)} does not expose dirty bitmap "${b}"`)[0];
      if (bitmaps.length > 0 && problem === undefined) {
        const maps = await Promise.all(bitmaps.map(async (b) => new RangeSet((await client.mapAll(dirtyBitmapContext(b))).filter((e) => e.flags & DIRTY).map((e) => [e.offset, e.offset + e.length] as const))));
        if (maps.some((m) => !m.equals(maps[0]!))) problem = `dirty bitmaps ${bitmaps.join(' and ')} of ${path} disagree (one was cleared or replaced)`;
        else dirty = maps[0]!;
      }
      return new NbdDiskSource(path, client, zeros, dirty, opts.onClose, problem);
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
    const pending = this.ahead.get(offset);
    this.ahead.delete(offset);
    const early = pending && (await pending);
    if (early && early.length === n) early.copy(into, 0, 0, n);
    else await this.client.read(into.subarray(0, n), offset);
    this.readAhead(offset + into.length, into.length);
    return n;
  }

  /** Keeps the next reads of this size (that will be asked: not holes, not unchanged) in flight. */
  private readAhead(from: number, step: number): void {
    // Skipping holes and unchanged blocks costs a lookup each: look far ahead for the next blocks to read.
    for (let at = from, k = 0; at < this.size && k < 4096 && this.ahead.size < READ_AHEAD; at += step, k++) {
      const len = Math.min(step, this.size - at);
      if (this.ahead.has(at) || this.isHole(at, len) || this.isUnchanged(at, len)) continue;
      const buf = Buffer.allocUnsafe(len);
      const p = this.client.read(buf, at).then(() => buf);
      p.catch(() => undefined); // surfaces when (if) the pipeline asks for it
      this.ahead.set(at, p);
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.ahead.values());
    this.ahead.clear();
    await this.client.close();
    await this.onClose?.();
  }
}
