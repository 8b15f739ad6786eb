import { constants as fsc, read as fsRead, write as fsWrite } from 'node:fs';
import { mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { fromFsError } from '../core/errors.js';
import { readNow } from './read-now.js';

/**
 * The storage seam: every byte the repository and the instant-recovery
 * overlays write goes through one of these. It is small on purpose (kopia's
 * blob storage, restic's backend): open, pread, pwrite, sync, rename, remove,
 * list. Errors leave it classified as LifeboatErrors (ENOSPC and EDQUOT →
 * LFB_ERR_NO_SPACE, anything else → LFB_ERR_IO with the errno in its
 * details), so no caller looks at errno. FaultyStorage wraps one to make
 * chosen calls fail in tests; encryption and object storage plug in here.
 */
export interface StorageFile {
  readonly path: string;
  /** Fills `into` from `position`; returns the count read (less only at end of file). */
  pread(into: Buffer, position: number): Promise<number>;
  /** Writes all of `data` at `position`, or throws (a short write is an error). */
  pwrite(data: Uint8Array, position: number): Promise<void>;
  /** fsync: the file's data and metadata are durable when it returns. */
  sync(): Promise<void>;
  /**
   * fdatasync: the file's data (and its size) are durable when it returns. On
   * object storage (ObjectFileStorage) it only moves the data into packs and
   * commits no state: its one caller on repository files is DurableFile's
   * write-behind, which promises nothing; sync() is what commits.
   */
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

/**
 * `read`: an existing file, read only. `write`: an existing file, read and
 * write. `create`: read and write, created if absent (never truncated).
 * `replace`: read and write, created or truncated to nothing.
 */
export type OpenMode = 'read' | 'write' | 'create' | 'replace';

export type StorageOp = 'open' | 'pread' | 'pwrite' | 'sync' | 'datasync' | 'truncate' | 'size' | 'close' | 'rename' | 'remove' | 'list' | 'syncDir' | 'mkdir';

export interface Storage {
  open(path: string, mode: OpenMode): Promise<StorageFile>;
  /** rename(2); not durable until syncDir() of the target's folder. */
  rename(from: string, to: string): Promise<void>;
  /** unlink(2); false when there was nothing to remove. */
  remove(path: string): Promise<boolean>;
  /** The names in a folder, sorted; [] when the folder does not exist. */
  list(dir: string): Promise<string[]>;
  /** fsync of a folder: names created, renamed or removed in it are durable. */
  syncDir(dir: string): Promise<void>;
  /** mkdir -p with mode 0700 for new folders. */
  mkdir(dir: string): Promise<void>;
  /**
   * Where this host keeps what belongs to `path` but is not stored with it:
   * lock files and caches. Absent (a local file system): `path` itself. An
   * object store has no locks, so its files' locks are on the host running
   * the command (see docs/design.md on what that does not protect).
   */
  hostPath?(path: string): string;
  /** rm -r of a folder whose files are all closed (absent: the local file system's rm). */
  removeFolder?(dir: string): Promise<void>;
}

const OPEN_FLAGS: Record<OpenMode, number> = {
  read: fsc.O_RDONLY,
  write: fsc.O_RDWR,
  create: fsc.O_RDWR | fsc.O_CREAT,
  replace: fsc.O_RDWR | fsc.O_CREAT | fsc.O_TRUNC,
};

/** pread(2) through libuv's callback API: a third less CPU per call than FileHandle.read's promise (small reads of a served disk). */
function readAt(fd: number, into: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fsRead(fd, into, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Fills `into` from `position` of the open file; returns the count read, less than asked only at the end of the file. */
export async function readFully(fd: number, into: Uint8Array, position: number): Promise<number> {
  // What the page cache holds is copied at once; the pool reads the rest (or meets the error).
  let done = readNow(fd, [into], position);
  while (done < into.length) {
    const n = await readAt(fd, into, done, into.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function writeAt(fd: number, data: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fsWrite(fd, data, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

class LocalFile implements StorageFile {
  /** Reads and writes under way on the descriptor: close() waits for them (a descriptor closed under a read could be reused by another file). */
  private busy = 0;
  private readonly idle: (() => void)[] = [];
  /** Set by the first close(): later calls share it, and no read or write starts after it. */
  private closing: Promise<void> | undefined;

  constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  /** Counts an operation in; refused once close() has begun (FileHandle's EBADF). */
  private enter(): void {
    if (this.closing !== undefined) throw Object.assign(new Error('the file is closed'), { code: 'EBADF' });
    this.busy += 1;
  }

  private done(): void {
    this.busy -= 1;
    if (this.busy === 0) for (const w of this.idle.splice(0)) w();
  }

  async pread(into: Buffer, position: number): Promise<number> {
    try {
      this.enter();
    } catch (err) {
      throw fromFsError(err, 'read', this.path);
    }
    try {
      return await readFully(this.fh.fd, into, position);
    } catch (err) {
      throw fromFsError(err, 'read', this.path);
    } finally {
      this.done();
    }
  }

  async pwrite(data: Uint8Array, position: number): Promise<void> {
    try {
      this.enter();
    } catch (err) {
      throw fromFsError(err, 'write', this.path);
    }
    try {
      let done = 0;
      while (done < data.length) {
        const bytesWritten = await writeAt(this.fh.fd, data, done, data.length - done, position + done);
        if (bytesWritten <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
        done += bytesWritten;
      }
    } catch (err) {
      throw fromFsError(err, 'write', this.path);
    } finally {
      this.done();
    }
  }

  async sync(): Promise<void> {
    try {
      await this.fh.sync();
    } catch (err) {
      throw fromFsError(err, 'fsync', this.path);
    }
  }

  async datasync(): Promise<void> {
    try {
      await this.fh.datasync();
    } catch (err) {
      throw fromFsError(err, 'fdatasync', this.path);
    }
  }

  async truncate(length: number): Promise<void> {
    try {
      await this.fh.truncate(length);
    } catch (err) {
      throw fromFsError(err, 'truncate', this.path);
    }
  }

  async size(): Promise<number> {
    try {
      return (await this.fh.stat()).size;
    } catch (err) {
      throw fromFsError(err, 'stat', this.path);
    }
  }

  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    while (this.busy > 0) await new Promise<void>((r) => this.idle.push(r));
    try {
      await this.fh.close();
    } catch (err) {
      throw fromFsError(err, 'close', this.path);
    }
  }
}

/** Files on a local file system (POSIX semantics, fsync for durability). */
export class LocalStorage implements Storage {
  async open(path: string, mode: OpenMode): Promise<StorageFile> {
    try {
      return new LocalFile(path, await open(path, OPEN_FLAGS[mode], 0o600));
    } catch (err) {
      throw fromFsError(err, 'open', path);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    try {
      await rename(from, to);
    } catch (err) {
      throw fromFsError(err, 'rename', from);
    }
  }

  async remove(path: string): Promise<boolean> {
    try {
      await unlink(path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw fromFsError(err, 'remove', path);
    }
  }

  async list(dir: string): Promise<string[]> {
    try {
      return (await readdir(dir)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw fromFsError(err, 'list', dir);
    }
  }

  async syncDir(dir: string): Promise<void> {
    let fh: FileHandle | undefined;
    try {
      fh = await open(dir, fsc.O_RDONLY);
      await fh.sync();
    } catch (err) {
      throw fromFsError(err, 'fsync folder', dir);
    } finally {
      await fh?.close().catch(() => undefined);
    }
  }

  async mkdir(dir: string): Promise<void> {
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw fromFsError(err, 'create folder', dir);
    }
  }
}

/** The local file system, shared: LocalStorage holds no state. */
export const localStorage: Storage = new LocalStorage();
