import { LifeboatError, isLifeboatError } from '../core/errors.js';
import type { StorageFile } from '../storage/storage.js';
import type { ExtentMap } from './extent-map.js';
import { inMemory, type Extent } from './extent-map.js';
import { encodeRoot, newPackName, rootName } from './file-root.js';
import type { ObjectStore } from './object-store.js';

/**
 * Bytes written and not yet in a pack, at most (then they are flushed into
 * one): memory stays bounded however large the file a writer makes.
 */
export const PACK_BYTES = 16 * 1024 * 1024;

/** A file's name in its store and its committed generation; rename moves an open file's to the new name. */
export interface FilePlace {
  rel: string;
  generation: number;
  /** Removed while open: its commits go nowhere, as an unlinked file's writes. */
  unlinked: boolean;
}

export function noSuchFile(doing: string, path: string): LifeboatError {
  return new LifeboatError('LFB_ERR_IO', `${doing} ${path}: no such file or directory`, { details: { path, errno: 'ENOENT' } });
}

/** Codes a caller of the storage seam acts on as they are; any other failure of the store is the seam's device error. */
const KEPT = new Set(['LFB_ERR_IO', 'LFB_ERR_NO_SPACE', 'LFB_ERR_FILE_CORRUPT', 'LFB_ERR_OBJECT_EXISTS', 'LFB_ERR_IMMUTABLE', 'LFB_ERR_INVALID_ARGUMENT']);

/**
 * The storage seam's errors (storage.ts): no space stays no space, anything
 * else of the store (a timeout, an unreachable or refusing endpoint, a
 * missing object) is LFB_ERR_IO, the store's own code in `storeCode`, so that
 * a job scan or verify takes it for the device failing, never for a damaged
 * file. A damaged root (FILE_CORRUPT), a lost commit race (OBJECT_EXISTS) and
 * an object lock (IMMUTABLE) keep their codes.
 */
export function toStorageError(err: unknown, doing: string, path: string): LifeboatError {
  if (err instanceof LifeboatError && KEPT.has(err.code)) return err;
  const code = err instanceof LifeboatError ? err.code : undefined;
  const why = err instanceof Error ? err.message : String(err);
  return new LifeboatError('LFB_ERR_IO', `${doing} ${path}: ${why}`, {
    cause: err,
    details: { path, ...(err instanceof LifeboatError ? err.details : {}), ...(code !== undefined ? { storeCode: code } : {}) },
  });
}

/** Put options with an object-lock date, when there is one. */
export function lockedUntil(date: Date | undefined): { retainUntil?: Date } {
  return date === undefined ? {} : { retainUntil: date };
}

function closedFile(doing: string, path: string): LifeboatError {
  return new LifeboatError('LFB_ERR_IO', `${doing} ${path}: the file is closed`, { details: { path, errno: 'EBADF' } });
}

/**
 * One open file of an ObjectFileStorage. Writes go to memory and, past
 * PACK_BYTES, to a new pack; sync(), datasync() and close() commit: the
 * rest goes to a pack, then a new root (the next generation, create-only)
 * names every extent. Until then other readers see the previous root, and a
 * crash leaves that root and some packs no root names (collect() removes
 * them). Reads are ranged GETs of the packs, all of one read at once.
 */
export class ObjectFile implements StorageFile {
  private version = 0;
  private committedVersion = 0;
  private unflushedBytes = 0;
  /** Flushes and commits, one at a time. */
  private serial: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;
  /** A root PUT that failed without an answer: it may have landed. */
  private uncertain: { readonly name: string; readonly bytes: Buffer; readonly generation: number } | undefined;
  /** The pack being written while writes go on into memory (one at a time: memory stays under about two packs). */
  private flushing: Promise<void> | undefined;
  /** Why that background flush failed: told to the next write or sync (its bytes are still in memory, so a retry loses nothing). */
  private flushError: unknown;

  constructor(
    readonly path: string,
    private readonly store: ObjectStore,
    readonly place: FilePlace,
    private readonly map: ExtentMap,
    private readonly writable: boolean,
    private readonly hooks: {
      readonly now: () => number;
      readonly packBytes: number;
      readonly onClosed: (f: ObjectFile) => void;
      /** The object-lock date of this file's packs or roots, if they get one. */
      readonly retainUntil: (rel: string, kind: 'pack' | 'root') => Date | undefined;
    },
  ) {}

  private check(doing: string, write: boolean): void {
    if (this.closing !== undefined) throw closedFile(doing, this.path);
    if (write && !this.writable)
      throw new LifeboatError('LFB_ERR_IO', `${doing} ${this.path}: opened for reading only`, { details: { path: this.path, errno: 'EBADF' } });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.serial.then(fn, fn);
    this.serial = run.catch(() => undefined);
    return run;
  }

  async pread(into: Buffer, position: number): Promise<number> {
    this.check('read', false);
    const size = this.map.size;
    if (position >= size || into.length === 0) return 0;
    const length = Math.min(into.length, size - position);
    into.fill(0, 0, length);
    try {
      await Promise.all(this.map.within(position, length).map((e) => this.readExtent(e, into, e.offset - position)));
    } catch (err) {
      throw toStorageError(err, 'read', this.path);
    }
    return length;
  }

  private async readExtent(e: Extent, into: Buffer, at: number): Promise<void> {
    // Read together: a flush moves a record from memory to its pack in one step.
    const data = e.data;
    const pack = e.pack;
    if (data !== undefined) {
      data.copy(into, at);
      return;
    }
    let got: Buffer;
    try {
      got = await this.store.get(pack!, { offset: e.packOffset, length: e.length });
    } catch (err) {
      if (isLifeboatError(err, 'LFB_ERR_OBJECT_NOT_FOUND'))
        throw new LifeboatError('LFB_ERR_IO', `read ${this.path}: its pack ${pack} is gone`, { details: { path: this.path, object: pack } });
      throw err;
    }
    if (got.length !== e.length)
      throw new LifeboatError('LFB_ERR_IO', `read ${this.path}: pack ${pack} is shorter than its root says`, { details: { path: this.path, object: pack } });
    got.copy(into, at);
  }

  async pwrite(data: Uint8Array, position: number): Promise<void> {
    this.check('write', true);
    if (data.length === 0) return;
    // A copy: the caller may reuse its buffer as soon as this returns.
    this.map.place(inMemory(position, Buffer.from(data)));
    this.version++;
    this.unflushedBytes += data.length;
    if (this.unflushedBytes >= this.hooks.packBytes) {
      // The PUT of a pack runs while the writer goes on (compressing the next blocks): only a second full pack waits for it.
      if (this.flushing !== undefined) await this.flushing;
      this.throwFlushError();
      if (this.unflushedBytes >= this.hooks.packBytes && this.flushing === undefined) {
        const run = this.exclusive(() => this.flush()).catch((err: unknown) => {
          this.flushError = toStorageError(err, 'write', this.path);
        });
        this.flushing = run.finally(() => (this.flushing = undefined));
      }
    }
  }

  private throwFlushError(): void {
    if (this.flushError === undefined) return;
    const err = this.flushError;
    this.flushError = undefined;
    throw err;
  }

  private async flush(): Promise<void> {
    const records = this.map.unflushed();
    if (records.length === 0) return;
    const pack = newPackName(this.hooks.now());
    await this.store.put(pack, Buffer.concat(records.map((r) => r.data!)), lockedUntil(this.hooks.retainUntil(this.place.rel, 'pack')));
    this.map.markFlushed(records, pack);
    this.unflushedBytes = this.map.unflushed().reduce((n, r) => n + r.length, 0);
  }

  private async commit(): Promise<void> {
    if (this.version === this.committedVersion) return;
    // Writes may land during a flush: flush again until the view taken holds only flushed extents.
    for (;;) {
      await this.flush();
      const extents = this.map.all();
      if (extents.some((e) => e.pack === undefined)) continue;
      const version = this.version;
      const size = this.map.size;
      if (this.place.unlinked) {
        this.committedVersion = version;
        return;
      }
      await this.settleUncertain();
      const { rel, generation: previous } = this.place;
      const next = previous + 1;
      const name = rootName(rel, next);
      const bytes = encodeRoot(size, extents);
      try {
        await this.store.put(name, bytes, { ifNoneMatch: '*', ...lockedUntil(this.hooks.retainUntil(rel, 'root')) });
      } catch (err) {
        if (isLifeboatError(err, 'LFB_ERR_OBJECT_EXISTS'))
          throw new LifeboatError('LFB_ERR_OBJECT_EXISTS', `commit ${this.path}: another writer committed this file first (generation ${next})`, {
            details: { path: this.path, object: name },
          });
        // It may have landed all the same (an answer lost on the way): the next commit looks before it takes it for another writer's.
        this.uncertain = { name, bytes, generation: next };
        throw err;
      }
      if (this.place.rel !== rel || this.place.generation !== previous || this.place.unlinked) {
        // Renamed or removed while the PUT was under way: that root went to the old name. Drop it, commit again where the file is now.
        await this.store.delete(name).catch(() => undefined);
        continue;
      }
      this.place.generation = next;
      this.committedVersion = version;
      // The older root is no longer read; one left by a failure here is removed by collect().
      if (previous > 0) await this.store.delete(rootName(rel, previous)).catch(() => undefined);
      return;
    }
  }

  /** A root whose PUT failed without an answer: if it landed (our bytes under its name), it is this file's latest. */
  private async settleUncertain(): Promise<void> {
    const u = this.uncertain;
    if (u === undefined) return;
    const found = await this.store.get(u.name).catch((err: unknown) => {
      if (isLifeboatError(err, 'LFB_ERR_OBJECT_NOT_FOUND')) return undefined;
      throw err;
    });
    this.uncertain = undefined;
    if (found !== undefined && found.equals(u.bytes) && u.name === rootName(this.place.rel, u.generation)) {
      const previous = this.place.generation;
      this.place.generation = u.generation;
      if (previous > 0) await this.store.delete(rootName(this.place.rel, previous)).catch(() => undefined);
    }
  }

  async sync(): Promise<void> {
    this.check('fsync', false);
    this.throwFlushError();
    if (this.writable) await this.exclusive(() => this.commit()).catch((err: unknown) => Promise.reject(toStorageError(err, 'fsync', this.path)));
  }

  /**
   * Moves what was written into packs, and commits nothing: a root written at
   * every write-back (its one caller, DurableFile.writeBehind, every 8 MiB of a
   * backup file) would list every extent so far each time, roots growing with
   * the square of the file. Only sync (and close) make a state durable here.
   */
  async datasync(): Promise<void> {
    this.check('fdatasync', false);
    this.throwFlushError();
    if (this.writable) await this.exclusive(() => this.flush()).catch((err: unknown) => Promise.reject(toStorageError(err, 'fdatasync', this.path)));
  }

  async truncate(length: number): Promise<void> {
    this.check('truncate', true);
    this.map.truncate(length);
    this.version++;
  }

  async size(): Promise<number> {
    this.check('stat', false);
    return this.map.size;
  }

  /** Commits what was written (as a local file's bytes are there for the next open after close). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        if (this.writable) await this.exclusive(() => this.commit()).catch((err: unknown) => Promise.reject(toStorageError(err, 'close', this.path)));
      } finally {
        this.hooks.onClosed(this);
      }
    })();
    return this.closing;
  }
}
