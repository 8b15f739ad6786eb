import { crc32 } from '@node-rs/crc32';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../core/log.js';
import { PREFETCH_MAX_BLOCKS, RestorePointDisk } from '../repository/restore-point-disk.js';
import type { Open } from './session-types.js';

/**
 * Boot prefetch: the blocks a session's clients (a booting VM, mostly) read in
 * the first minutes after it is published are noted, per job and disk, and
 * the next session of that job decodes them ahead of its guest. The list
 * (`<repo>/cache/boot/<job>/disk<N>.blocks`) is a header (magic, count,
 * CRC-32 of the numbers) and the block numbers as 32-bit little-endian
 * integers, in the order first read. A damaged or missing list just means no
 * prefetch.
 */

/** How long after a session starts its reads are noted. */
export const BOOT_RECORD_MS = 180_000;
const MAGIC = 0x4c42424c; // "LBBL"
const HEADER = 12;

export function bootListPath(hostRoot: string, job: string, disk: number): string {
  return join(hostRoot, 'cache', 'boot', job, `disk${disk}.blocks`);
}

export function encodeBootList(blocks: readonly number[]): Buffer {
  const body = Buffer.alloc(4 * blocks.length);
  blocks.forEach((b, i) => body.writeUInt32LE(b, 4 * i));
  const head = Buffer.alloc(HEADER);
  head.writeUInt32BE(MAGIC, 0);
  head.writeUInt32BE(blocks.length, 4);
  head.writeUInt32BE(crc32(body), 8);
  return Buffer.concat([head, body]);
}

/** The block numbers of a list file, or a string saying what is wrong with it. */
export function decodeBootList(file: Buffer): number[] | string {
  if (file.length < HEADER || file.readUInt32BE(0) !== MAGIC) return 'is not a boot list';
  const n = file.readUInt32BE(4);
  if (n > PREFETCH_MAX_BLOCKS || file.length !== HEADER + 4 * n) return `says ${n} blocks but holds ${Math.floor((file.length - HEADER) / 4)}`;
  const body = file.subarray(HEADER);
  if (crc32(body) !== file.readUInt32BE(8)) return 'fails its checksum';
  const out: number[] = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = body.readUInt32LE(4 * i);
  return out;
}

/** The list of `job`'s disk `disk`, or undefined when there is none (or it is damaged: then a warning). */
export async function loadBootList(hostRoot: string, job: string, disk: number, logger: Logger): Promise<number[] | undefined> {
  const path = bootListPath(hostRoot, job, disk);
  let file: Buffer;
  try {
    file = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      logger.warn('instant recovery: the boot list could not be read; no prefetch', { path, problem: String(err) });
    return undefined;
  }
  const list = decodeBootList(file);
  if (typeof list === 'string') {
    logger.warn('instant recovery: the boot list is damaged; no prefetch (the next session writes a new one)', { path, problem: list });
    return undefined;
  }
  return list;
}

/** Replaces the list of `job`'s disk `disk` (written to a temporary file, then renamed: a reader sees the old list or the new one). */
export async function saveBootList(hostRoot: string, job: string, disk: number, blocks: readonly number[]): Promise<void> {
  const path = bootListPath(hostRoot, job, disk);
  await mkdir(join(path, '..'), { recursive: true });
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    await writeFile(tmp, encodeBootList(blocks));
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/**
 * One session's boot learning: its disks prefetch the job's lists at once,
 * and note what their clients read for `recordMs` from the first read. When
 * that time is up the new lists replace the old; a session that ends sooner
 * (a quick look at a file, a boot that failed) puts its blocks first and
 * keeps the old list's after them, so a short session never loses a boot.
 * A session nobody read from leaves the lists alone.
 */
export class BootRecording {
  private timer: NodeJS.Timeout | undefined;
  private saved: Promise<void> | undefined;
  /** Settles when every disk's prefetch is done. */
  readonly prefetched: Promise<void>;

  constructor(
    private readonly hostRoot: string,
    private readonly job: string,
    private readonly disks: readonly { readonly index: number; readonly base: RestorePointDisk }[],
    private readonly lists: readonly (number[] | undefined)[],
    /** Bytes of blocks a prefetch may decode: no more than the caches can hold, or the last ones would push out the first. */
    prefetchBytes: number,
    recordMs: number,
    private readonly logger: Logger,
  ) {
    this.prefetched = Promise.all(
      disks.map((d, i) => (lists[i] ? d.base.prefetch(lists[i].slice(0, Math.floor(prefetchBytes / d.base.blockSize))) : undefined)),
    ).then(() => undefined);
    const arm = (): void => {
      if (this.timer !== undefined || this.saved !== undefined) return;
      this.timer = setTimeout(() => void this.save(true), recordMs);
      this.timer.unref();
    };
    for (const d of disks) d.base.startRecording(arm);
  }

  /** Stops noting reads (for good) and saves the lists, whole (`complete`) or ahead of the old ones; never throws: a list is a hint. */
  save(complete: boolean): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.saved ??= (async () => {
      for (const [i, d] of this.disks.entries()) {
        const blocks = d.base.stopRecording();
        if (blocks.length === 0) continue;
        const seen = new Set(blocks);
        const list = complete ? blocks : [...blocks, ...(this.lists[i] ?? []).filter((b) => !seen.has(b))].slice(0, PREFETCH_MAX_BLOCKS);
        try {
          await saveBootList(this.hostRoot, this.job, d.index, list);
        } catch (err) {
          this.logger.warn('instant recovery: the boot list could not be saved', { job: this.job, disk: d.index, problem: String(err) });
        }
      }
    })();
    return this.saved;
  }

  /** Stops noting reads and saves nothing (a migration reads every block: that is not a boot). */
  discard(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.saved ??= Promise.resolve();
    for (const d of this.disks) d.base.stopRecording();
  }
}

/** The recordings of the sessions a server started, by session name. */
export class BootLearning {
  private readonly recordings = new Map<string, BootRecording>();

  constructor(
    private readonly hostRoot: string,
    private readonly recordMs: number,
    /** Bytes of blocks one disk's prefetch may decode. */
    private readonly prefetchBytes: number,
    private readonly logger: Logger,
  ) {}

  /** A new session: its disks prefetch what the job's last session read first, and note what this one reads. */
  async begin(o: Open): Promise<void> {
    const disks = o.rec.disks.flatMap((d, i) => {
      const base = o.bases[i];
      return base instanceof RestorePointDisk ? [{ index: d.index, base }] : [];
    });
    const lists = await Promise.all(disks.map((d) => loadBootList(this.hostRoot, o.rec.job, d.index, this.logger)));
    void this.recordings.get(o.rec.name)?.save(false);
    this.recordings.set(o.rec.name, new BootRecording(this.hostRoot, o.rec.job, disks, lists, this.prefetchBytes, this.recordMs, this.logger));
  }

  prefetched(name: string): Promise<void> | undefined {
    return this.recordings.get(name)?.prefetched;
  }

  /** The session stops (or the server closes): its lists are saved if it was still noting reads. */
  async end(name: string): Promise<void> {
    const r = this.recordings.get(name);
    this.recordings.delete(name);
    await r?.save(false);
  }

  /** Session `name` stops noting reads, and its lists are not saved (a migration starts). */
  discard(name: string): void {
    this.recordings.get(name)?.discard();
  }
}
