import { crc32 } from '@node-rs/crc32';
import { close as fsClose, open as fsOpen } from 'node:fs';
import { mkdir, readdir, stat, statfs, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { webcrypto } from 'node:crypto';
import { systemClock, type Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { PIECE_BYTES, PIECE_SHIFT, encodeHeader, headerBytes, parseHeader } from './decoded-file.js';
import { OpenFiles, readParts, writeParts } from './decoded-fds.js';

export { PIECE_BYTES } from './decoded-file.js';

/**
 * Decoded backup blocks kept on local storage, across restarts: the second
 * boot of a point, tonight's SureBackup run of last night's point, or a
 * migration after a boot read a block from here instead of decompressing it
 * again. A block is filed under the digest (SHA-256) its backup file records for it, once its bytes are checked against it,
 * so one block shared by several points or sessions is kept once.
 *
 * The backup is the truth: every piece read from here is checked against a
 * CRC-32 written with it, and a file that fails is removed and the block
 * decoded from the backup again. Nothing is fsynced: a file torn by a crash
 * fails its check like any other damage.
 *
 * The file layout is decoded-file.ts's.
 */

/**
 * Writes under way at once, by default; a block decoded while this many are
 * pending is not kept now (reads never wait for the cache: put() says so,
 * and the disk writes it once its clients pause), and each holds its decoded
 * block. A write costs a SHA-256 of the block (0.6 ms per MiB here) and CPU
 * a fast stream wants on two cores. Measured 2026-12-06 on the 1 GiB sample
 * disk (755 blocks, zstd:1, a cold `qemu-img convert` over NBD, four runs
 * each): the code before, with 16 pending and no later writes, took
 * 1.84-2.32 s and kept 398-468 blocks; 16 with this write path 2.22-2.83 s;
 * 4 took 1.70-1.88 s, and all 755 blocks were kept within 3 s after.
 */
export const MAX_PENDING_WRITES = 4;
/** A hit moves the file's mtime (its place in the order kept across restarts) at most this often. */
const TOUCH_EVERY_MS = 60_000;
const NAME = /^([0-9a-f]{64})-(\d{1,10})$/;
/** Nothing is written while the file system has less than this share free: the backups on it come first. */
const MIN_FREE_SHARE = 0.1;
/** How often the free space is asked. */
const SPACE_CHECK_MS = 10_000;
/** Errors that say nothing about the file: a read that meets one is a miss, and the file stays. */
const TRANSIENT = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'ENOMEM']);

export interface DecodedStoreStats {
  readonly dir: string;
  readonly budgetBytes: number;
  /** Bytes of the files held (headers included) and of the writes under way. */
  readonly usedBytes: number;
  readonly blocks: number;
  readonly hits: number;
  readonly misses: number;
  /** Files that failed their check and were removed. */
  readonly damaged: number;
  readonly written: number;
  /** Blocks put and not kept then: writes were pending (a disk writes such a block later, once its clients pause), there was no room, or the file could not be written. */
  readonly skipped: number;
  /** Blocks not kept because their bytes did not match the digest their backup file records (SHA-256). */
  readonly mismatched: number;
}

interface Entry {
  readonly key: string;
  readonly path: string;
  readonly length: number;
  readonly fileBytes: number;
  /** The pieces' checksums once a header has been read and checked (random reads). */
  pieces: Uint32Array | undefined;
  touchedAt: number;
}

function keyOf(digest: Uint8Array, length: number): string {
  return `${Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex')}-${length}`;
}

export class DecodedBlockStore {
  /** Least recently used first (a Map keeps insertion order). */
  private readonly entries = new Map<string, Entry>();
  /** Writes under way, by key: settled when the write has ended, kept or not. */
  private readonly writing = new Map<string, Promise<void>>();
  /** Files being removed: not written again until they are gone (their bytes are still counted). */
  private readonly removing = new Set<string>();
  private readonly madeDirs = new Set<string>();
  /** Descriptors of the files read lately, kept open. */
  private readonly files = new OpenFiles();
  private pending = new Set<Promise<void>>();
  /** Who waits in writable(). */
  private readonly waitingToWrite: (() => void)[] = [];
  /** Bytes of the files held, and of the writes under way (reserved before they start, so the disk never holds more than the budget). */
  private used = 0;
  /** Removals run one after another: two writes making room at once would each remove files for the same bytes. */
  private trimming: Promise<void> = Promise.resolve();
  private spaceCheckedAt = -Infinity;
  private spaceLow = false;
  private counts = { hits: 0, misses: 0, damaged: 0, written: 0, skipped: 0, mismatched: 0 };
  private closed = false;

  private constructor(
    readonly dir: string,
    readonly budgetBytes: number,
    private readonly clock: Clock,
    private readonly logger: Logger | undefined,
    private readonly maxPendingWrites: number,
  ) {}

  /**
   * Opens (making it if need be) the store in `dir`: the files already there
   * are taken back, oldest mtime first out, trimmed to `budgetBytes`. A file
   * a crash left half written is taken back too, and removed by the first
   * read that finds it damaged.
   */
  static async open(dir: string, budgetBytes: number, opts: { clock?: Clock; logger?: Logger; maxPendingWrites?: number } = {}): Promise<DecodedBlockStore> {
    if (!Number.isSafeInteger(budgetBytes) || budgetBytes < 0) throw new RangeError(`disk cache budget ${budgetBytes} must be a whole number of bytes ≥ 0`);
    const pending = opts.maxPendingWrites ?? MAX_PENDING_WRITES;
    if (!Number.isSafeInteger(pending) || pending < 1) throw new RangeError(`pending writes ${pending} must be a whole number ≥ 1`);
    const store = new DecodedBlockStore(dir, budgetBytes, opts.clock ?? systemClock, opts.logger, pending);
    await mkdir(dir, { recursive: true });
    const found: { entry: Entry; mtime: number }[] = [];
    for (const sub of await readdir(dir, { withFileTypes: true })) {
      const at = join(dir, sub.name);
      // Left by versions that wrote through a temporary file and renamed it.
      if (sub.isFile() && sub.name.startsWith('tmp-')) {
        await unlink(at).catch(() => undefined);
        continue;
      }
      if (!sub.isDirectory() || !/^[0-9a-f]{2}$/.test(sub.name)) continue;
      store.madeDirs.add(sub.name);
      for (const name of await readdir(at)) {
        const m = NAME.exec(name);
        if (!m || !m[1]!.startsWith(sub.name)) continue;
        const path = join(at, name);
        const st = await stat(path).catch(() => undefined);
        if (!st?.isFile()) continue;
        const length = Number(m[2]);
        found.push({ entry: { key: name, path, length, fileBytes: st.size, pieces: undefined, touchedAt: st.mtimeMs }, mtime: st.mtimeMs });
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) {
      store.entries.set(f.entry.key, f.entry);
      store.used += f.entry.fileBytes;
    }
    await store.trim();
    return store;
  }

  stats(): DecodedStoreStats {
    return { dir: this.dir, budgetBytes: this.budgetBytes, usedBytes: this.used, blocks: this.entries.size, ...this.counts };
  }

  /** True if the block is held (a read may still find it damaged). */
  has(digest: Uint8Array, length: number): boolean {
    return this.entries.has(keyOf(digest, length));
  }

  /** The whole block, checked; undefined if it is not held or fails its check (then it is removed). */
  async readBlock(digest: Uint8Array, length: number): Promise<Buffer | undefined> {
    return this.readBlockInto(digest, length, () => Buffer.allocUnsafe(length));
  }

  /**
   * As readBlock, into the buffer `buffer()` gives (`length` bytes), asked
   * for only once the block is found to be held. If the block then fails its
   * check, the buffer holds nothing of use.
   */
  async readBlockInto(digest: Uint8Array, length: number, buffer: () => Buffer): Promise<Buffer | undefined> {
    const e = this.lookup(digest, length);
    if (e === undefined) return undefined;
    const into = buffer();
    if (into.length !== length) throw new RangeError(`a buffer of ${into.length} bytes for a block of ${length}`);
    const head = headerBytes(length);
    // The header's checksums are read once, with the first read of the file (one readv with the data).
    const h = e.pieces === undefined ? Buffer.allocUnsafe(head) : undefined;
    let counts: number[];
    try {
      const parts = [...(h ? [{ into: h, position: 0 }] : []), { into, position: head }];
      counts = await this.files.use(e.key, e.path, (fd) => readParts(fd, parts));
    } catch (err) {
      return this.lost(e, err);
    }
    let pieces = e.pieces;
    if (h !== undefined) {
      const parsed = parseHeader(h.subarray(0, counts[0]), length);
      if (typeof parsed === 'string') return this.damagedFile(e, parsed);
      pieces = parsed;
    }
    const got = counts[counts.length - 1]!;
    if (got < length) return this.damagedFile(e, `ends ${length - got} bytes early`);
    for (let i = 0; i < pieces!.length; i++) {
      if (crc32(into.subarray(i * PIECE_BYTES, (i + 1) * PIECE_BYTES)) !== pieces![i]) return this.damagedFile(e, `piece ${i} fails its checksum`);
    }
    e.pieces = pieces;
    this.hit(e);
    return into;
  }

  /** Bytes [from, to) of the block, reading and checking only the pieces that cover them; undefined as readBlock. */
  async readRange(digest: Uint8Array, length: number, from: number, to: number): Promise<Buffer | undefined> {
    if (from < 0 || to > length || from >= to) throw new RangeError(`range ${from}..${to} of a ${length}-byte block`);
    const e = this.lookup(digest, length);
    if (e === undefined) return undefined;
    const head = headerBytes(length);
    const first = from >>> PIECE_SHIFT;
    const last = (to - 1) >>> PIECE_SHIFT;
    const start = first * PIECE_BYTES;
    const end = Math.min(length, (last + 1) * PIECE_BYTES);
    try {
      // The header's checksums are read once, with the first range read of the file.
      const h = e.pieces === undefined ? Buffer.allocUnsafe(head) : undefined;
      const buf = Buffer.allocUnsafe(end - start);
      const parts = [...(h ? [{ into: h, position: 0 }] : []), { into: buf, position: head + start }];
      const counts = await this.files.use(e.key, e.path, (fd) => readParts(fd, parts));
      let pieces = e.pieces;
      if (h !== undefined) {
        const parsed = parseHeader(h.subarray(0, counts[0]), length);
        if (typeof parsed === 'string') return this.damagedFile(e, parsed);
        pieces = e.pieces = parsed;
      }
      const bytesRead = counts[counts.length - 1]!;
      if (bytesRead !== buf.length) return this.damagedFile(e, `ends ${buf.length - bytesRead} bytes early`);
      for (let i = first; i <= last; i++) {
        const at = (i - first) * PIECE_BYTES;
        if (crc32(buf.subarray(at, at + PIECE_BYTES)) !== pieces![i]) return this.damagedFile(e, `piece ${i} fails its checksum`);
      }
      this.hit(e);
      return buf.subarray(from - start, to - start);
    } catch (err) {
      return this.lost(e, err);
    }
  }

  /**
   * Keeps a decoded block, in the background: the caller does not wait, and
   * the block is dropped when too many writes are pending. `data` must not be
   * changed afterwards (decoded blocks are never reused). False when the
   * block was dropped for pending writes: it may be put again once
   * writable() settles.
   */
  put(digest: Uint8Array, data: Buffer): boolean {
    if (this.closed || this.budgetBytes === 0) return true;
    const key = keyOf(digest, data.length);
    if (this.entries.has(key) || this.writing.has(key) || this.removing.has(key)) return true;
    const head = headerBytes(data.length);
    const fileBytes = head + data.length;
    if (fileBytes > this.budgetBytes) return true;
    this.checkSpace();
    if (this.spaceLow || this.reserved() + fileBytes > this.budgetBytes) {
      this.counts.skipped += 1;
      return true;
    }
    if (this.pending.size >= this.maxPendingWrites) {
      this.counts.skipped += 1;
      return false;
    }
    this.used += fileBytes;
    const p = this.write(key, digest, data, head)
      .catch((err: unknown) => {
        this.used -= fileBytes;
        if (err instanceof MismatchError) return;
        this.counts.skipped += 1;
        this.logger?.warn('instant recovery: a decoded block could not be written to the disk cache', { dir: this.dir, problem: String(err) });
      })
      .finally(() => {
        this.writing.delete(key);
        this.pending.delete(p);
        this.wakeWriters();
      });
    this.pending.add(p);
    this.writing.set(key, p);
    return true;
  }

  /** Settles once the block's write under way (if any) has ended. */
  written(digest: Uint8Array, length: number): Promise<void> {
    return this.writing.get(keyOf(digest, length)) ?? Promise.resolve();
  }

  /** Settles once a write may start (fewer than the most allowed are pending), or the store is closed. */
  writable(): Promise<void> {
    if (this.closed || this.pending.size < this.maxPendingWrites) return Promise.resolve();
    return new Promise((resolve) => this.waitingToWrite.push(resolve));
  }

  private wakeWriters(): void {
    const waiting = this.waitingToWrite.splice(0);
    for (const wake of waiting) wake();
  }

  /** Waits for the writes under way (and those they make room for). */
  async flushed(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending);
  }

  /** Waits for the writes under way; nothing is written after. */
  async close(): Promise<void> {
    this.closed = true;
    this.wakeWriters();
    await this.flushed();
    await this.files.closeAll();
  }

  /** Bytes reserved by the writes under way. */
  private reserved(): number {
    let n = 0;
    for (const key of this.writing.keys()) n += headerBytes(Number(key.slice(65))) + Number(key.slice(65));
    return n;
  }

  /** Refreshes (in the background, at most every SPACE_CHECK_MS) whether the file system is too full to write to. */
  private checkSpace(): void {
    const now = this.clock.now().getTime();
    if (now - this.spaceCheckedAt < SPACE_CHECK_MS) return;
    this.spaceCheckedAt = now;
    void statfs(this.dir).then(
      (fs) => {
        const low = fs.bavail < fs.blocks * MIN_FREE_SHARE;
        if (low && !this.spaceLow)
          this.logger?.warn('instant recovery: the disk cache writes nothing while its file system is over 90% full', { dir: this.dir });
        this.spaceLow = low;
      },
      () => undefined,
    );
  }

  private async write(key: string, digest: Uint8Array, data: Buffer, head: number): Promise<void> {
    // The block may be served for every point whose block has this digest: it must be that block.
    const actual = Buffer.from(await webcrypto.subtle.digest('SHA-256', new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength)));
    if (!actual.equals(digest)) {
      this.counts.mismatched += 1;
      this.logger?.warn('instant recovery: a decoded block does not match the digest its backup file records; it is not kept', {
        digest: Buffer.from(digest).toString('hex'),
      });
      throw new MismatchError();
    }
    // Room first: the reservation made in put() is counted, so this removes older files until the new one fits.
    await this.trim();
    if (this.used > this.budgetBytes) throw new Error('no room: files of the cache could not be removed');
    const header = encodeHeader(data, head);
    const sub = key.slice(0, 2);
    if (!this.madeDirs.has(sub)) {
      await mkdir(join(this.dir, sub), { recursive: true });
      this.madeDirs.add(sub);
    }
    // Written in place, not renamed into place: no reader looks for the file
    // before its entry exists, and a file torn by a crash fails its check.
    // The descriptor stays open for the reads to come.
    const path = join(this.dir, sub, key);
    const fd = await openWrite(path);
    try {
      await writeParts(fd, [header, data], 0);
    } catch (err) {
      await new Promise<void>((resolve) => fsClose(fd, () => resolve()));
      await unlink(path).catch(() => undefined);
      throw err;
    }
    this.files.adopt(key, fd);
    // The bytes were reserved in put(): the entry takes them over.
    const pieces = parseHeader(header, data.length);
    const e: Entry = {
      key,
      path,
      length: data.length,
      fileBytes: head + data.length,
      pieces: typeof pieces === 'string' ? undefined : pieces,
      touchedAt: this.clock.now().getTime(),
    };
    this.entries.set(key, e);
    this.counts.written += 1;
  }

  /** Removes the least recently used files until the store fits its budget. */
  private trim(): Promise<void> {
    this.trimming = this.trimming.then(() => this.trimNow());
    return this.trimming;
  }

  private async trimNow(): Promise<void> {
    for (const e of [...this.entries.values()]) {
      if (this.used <= this.budgetBytes) return;
      if (this.entries.get(e.key) !== e) continue;
      // Out of the map first (no reader picks it up again), but counted until the file is gone.
      this.entries.delete(e.key);
      this.removing.add(e.key);
      // Its space comes back once the descriptor is closed too.
      this.files.forget(e.key);
      try {
        await unlink(e.path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          // Still on disk: still counted, and tried again by the next trim.
          this.entries.set(e.key, e);
          this.logger?.warn('instant recovery: a file of the disk cache could not be removed', { file: e.path, problem: String(err) });
          continue;
        }
      } finally {
        this.removing.delete(e.key);
      }
      this.used -= e.fileBytes;
    }
  }

  private lookup(digest: Uint8Array, length: number): Entry | undefined {
    // Closed: nothing is read (a descriptor opened now would never be closed).
    const e = this.closed ? undefined : this.entries.get(keyOf(digest, length));
    if (e === undefined) this.counts.misses += 1;
    return e;
  }

  private hit(e: Entry): void {
    this.counts.hits += 1;
    if (this.entries.get(e.key) !== e) return;
    this.entries.delete(e.key);
    this.entries.set(e.key, e);
    const now = this.clock.now().getTime();
    if (now - e.touchedAt >= TOUCH_EVERY_MS) {
      e.touchedAt = now;
      const t = new Date(now);
      void utimes(e.path, t, t).catch(() => undefined);
    }
  }

  private forget(e: Entry): void {
    if (this.entries.get(e.key) !== e) return;
    this.entries.delete(e.key);
    this.files.forget(e.key);
    this.used -= e.fileBytes;
  }

  /** The file went away (evicted while being opened) or could not be read: a miss. */
  private lost(e: Entry, err: unknown): undefined {
    this.counts.misses += 1;
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined && TRANSIENT.has(code)) return undefined;
    if (code !== 'ENOENT') return this.damagedFile(e, String(err));
    this.forget(e);
    return undefined;
  }

  private damagedFile(e: Entry, problem: string): undefined {
    this.counts.damaged += 1;
    this.logger?.warn('instant recovery: a block in the disk cache is damaged; it is removed and read from the backup', { file: e.path, problem });
    // An entry already replaced (or removed) is not ours to delete: the file at its path may be a newer, good one.
    if (this.entries.get(e.key) !== e) return undefined;
    this.forget(e);
    // Not written again until the damaged file is gone: a new file at its path would be removed with it.
    this.removing.add(e.key);
    void unlink(e.path)
      .catch(() => undefined)
      .finally(() => this.removing.delete(e.key));
    return undefined;
  }
}

class MismatchError extends Error {}

function openWrite(path: string): Promise<number> {
  return new Promise((resolve, reject) => fsOpen(path, 'w+', (err, fd) => (err ? reject(err) : resolve(fd))));
}
