import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { link, lstat, mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { systemClock } from '../core/clock.js';
import { crashPoint } from '../core/crash-point.js';
import { LifeboatError, fromFsError } from '../core/errors.js';
import { readFully } from '../storage/storage.js';
import {
  checkObjectName,
  checkObjectPrefix,
  checkPutSize,
  checkRange,
  compareNames,
  type ByteRange,
  type ObjectHead,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from './object-store.js';

/** Temporary files of puts older than this are a crashed writer's, removed at open. */
const STALE_INCOMING_MS = 24 * 3600_000;

/**
 * An object store in a local folder, for tests and single-host use: object
 * `a/b` is the file `<root>/objects/a/b`. A put writes a temporary file in
 * `<root>/incoming`, fsyncs it, and then renames it over the name, or for a
 * create-only put hard-links it to the name (link(2) fails with EEXIST when
 * the name exists: the atomic create-if-absent that S3's If-None-Match: *
 * gives), and fsyncs the folder. A reader never sees half an object, and a
 * crash leaves at most a temporary file, which is not listed. Folders left
 * empty by deletes stay (they hold nothing a listing shows).
 *
 * A name cannot be both an object and a folder of others here (`a` and `a/b`):
 * such a put fails with LFB_ERR_INVALID_ARGUMENT.
 */
export class LocalObjectStore implements ObjectStore {
  readonly retention = false;
  private readonly objects: string;
  private readonly incoming: string;

  private constructor(readonly location: string) {
    this.objects = join(location, 'objects');
    this.incoming = join(location, 'incoming');
  }

  /** Opens (creating if needed) the store in `root`, and removes temporary files a crashed writer left there a day ago or more. */
  static async open(root: string): Promise<LocalObjectStore> {
    const store = new LocalObjectStore(root);
    try {
      await mkdir(store.objects, { recursive: true, mode: 0o700 });
      await mkdir(store.incoming, { recursive: true, mode: 0o700 });
      const now = systemClock.now().getTime(); // file times are real ones: never a pinned LIFEBOAT_NOW
      for (const n of await readdir(store.incoming)) {
        const p = join(store.incoming, n);
        const st = await lstat(p).catch(() => undefined);
        if (st !== undefined && now - st.mtimeMs > STALE_INCOMING_MS) await unlink(p).catch(() => undefined);
      }
    } catch (err) {
      throw fromFsError(err, 'open object folder', root);
    }
    return store;
  }

  private path(name: string): string {
    return join(this.objects, name);
  }

  async put(name: string, data: Uint8Array, options: PutOptions = {}): Promise<void> {
    checkObjectName(name);
    checkPutSize(name, data);
    if (options.retainUntil !== undefined)
      throw new LifeboatError(
        'LFB_ERR_IMMUTABLE_UNSUPPORTED',
        `put ${name}: a local object folder (${this.location}) has no object lock; nothing was written`,
        {
          details: { name },
        },
      );
    const target = this.path(name);
    const temp = join(this.incoming, `${randomBytes(12).toString('hex')}.tmp`);
    let fh: FileHandle | undefined;
    try {
      crashPoint();
      fh = await open(temp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
      await fh.writeFile(data);
      await fh.sync();
      await fh.close();
      fh = undefined;
      await this.makeFolders(dirname(target));
      crashPoint();
      if (options.ifNoneMatch === '*') {
        try {
          await link(temp, target);
        } catch (err) {
          const isFolder = (await lstat(target).catch(() => undefined))?.isDirectory() === true;
          if ((err as NodeJS.ErrnoException).code === 'EEXIST' && !isFolder)
            throw new LifeboatError('LFB_ERR_OBJECT_EXISTS', `put ${name}: an object of that name exists in ${this.location} (create-only put)`, {
              details: { name },
            });
          throw isFolder ? Object.assign(new Error('a folder of that name exists'), { code: 'EISDIR' }) : err;
        }
      } else {
        await rename(temp, target);
      }
      await syncFolder(dirname(target));
    } catch (err) {
      throw this.fsError(err, 'put', name);
    } finally {
      await fh?.close().catch(() => undefined);
      await unlink(temp).catch(() => undefined);
    }
  }

  /** mkdir -p of an object's folder; each folder it creates is made durable in its parent. */
  private async makeFolders(dir: string): Promise<void> {
    let first;
    try {
      first = await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      // mkdir -p answers EEXIST when an object (a file) holds the place of one of the folders.
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw Object.assign(new Error('an object is in the way of a folder'), { code: 'ENOTDIR' });
      throw err;
    }
    if (first === undefined) return;
    for (let d = dir; ; d = dirname(d)) {
      await syncFolder(dirname(d));
      if (d === first) break;
    }
  }

  async get(name: string, range?: ByteRange): Promise<Buffer> {
    checkObjectName(name);
    if (range !== undefined) checkRange(name, range);
    let fh: FileHandle | undefined;
    try {
      fh = await open(this.path(name), fsc.O_RDONLY);
      const { size } = await fh.stat();
      const offset = range?.offset ?? 0;
      const length = Math.max(0, Math.min(range?.length ?? size, size - offset));
      const out = Buffer.allocUnsafe(length);
      const n = await readFully(fh.fd, out, offset);
      // The file shrank under us: only a writer outside this store could do that.
      if (n !== length)
        throw new LifeboatError('LFB_ERR_IO', `get ${name}: the file changed while it was read (${n} of ${length} bytes)`, { details: { name } });
      return out;
    } catch (err) {
      throw this.fsError(err, 'get', name);
    } finally {
      await fh?.close().catch(() => undefined);
    }
  }

  async head(name: string): Promise<ObjectHead | undefined> {
    checkObjectName(name);
    try {
      const st = await stat(this.path(name));
      return st.isFile() ? { size: st.size } : undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw this.fsError(err, 'head', name);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkObjectPrefix(prefix);
    const cut = prefix.lastIndexOf('/');
    const folder = cut < 0 ? '' : prefix.slice(0, cut);
    yield* this.walk(folder, prefix.slice(cut + 1));
  }

  /**
   * Depth first, each folder's entries sorted with folders as `name/`, which
   * is the order of the full names' bytes. One folder's names are in memory
   * at a time (per level of the walk).
   */
  private async *walk(folder: string, start: string): AsyncGenerator<ObjectInfo> {
    const dir = join(this.objects, folder);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw this.fsError(err, 'list', folder === '' ? '(all)' : `${folder}/`);
    }
    const keyed = entries
      .filter((e) => e.name.startsWith(start) && (e.isFile() || e.isDirectory()))
      .map((e) => ({ key: e.isDirectory() ? `${e.name}/` : e.name, dir: e.isDirectory(), name: e.name }))
      .sort((a, b) => compareNames(a.key, b.key));
    for (const e of keyed) {
      const name = folder === '' ? e.name : `${folder}/${e.name}`;
      if (e.dir) {
        yield* this.walk(name, '');
        continue;
      }
      try {
        checkObjectName(name);
      } catch {
        continue; // a file put there by hand, with a name no object can have
      }
      const st = await stat(this.path(name)).catch(() => undefined); // deleted meanwhile: not listed
      if (st?.isFile() === true) yield { name, size: st.size };
    }
  }

  async delete(name: string): Promise<void> {
    checkObjectName(name);
    const target = this.path(name);
    try {
      crashPoint();
      await unlink(target);
      await syncFolder(dirname(target));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Nothing of that name, or a folder of other objects' names: no object to remove.
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return;
      throw this.fsError(err, 'delete', name);
    }
  }

  async close(): Promise<void> {
    // Nothing is held between calls.
  }

  private fsError(err: unknown, doing: string, name: string): LifeboatError {
    if (err instanceof LifeboatError) return err;
    const code = (err as NodeJS.ErrnoException).code;
    const where = relative(this.location, this.path(name));
    if (doing === 'get' && (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR'))
      return new LifeboatError('LFB_ERR_OBJECT_NOT_FOUND', `${doing} ${name}: no such object in ${this.location}`, { cause: err, details: { name } });
    if (code === 'ENOTDIR' || code === 'EISDIR')
      return new LifeboatError(
        'LFB_ERR_INVALID_ARGUMENT',
        `${doing} ${name}: a local object folder cannot hold both an object and a folder of that name (${where})`,
        { cause: err, details: { name } },
      );
    return fromFsError(err, doing, join(this.location, where));
  }
}

async function syncFolder(dir: string): Promise<void> {
  const fh = await open(dir, fsc.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
