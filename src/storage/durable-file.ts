import { dirname } from 'node:path';
import { crashPoint } from '../core/crash-point.js';
import { LifeboatError, fromFsError } from '../core/errors.js';
import { localStorage, type Storage, type StorageFile } from './storage.js';

/**
 * A backup file being written or read, on a Storage (the repository's). A
 * thin layer over StorageFile that adds what the repository relies on: every
 * step that changes what is on disk passes a crash point (so the crash tests
 * can kill the process between any two of them), and write-behind. Errors
 * leave the Storage as LifeboatErrors (ENOSPC → LFB_ERR_NO_SPACE): higher
 * layers never look at errno.
 */
export class DurableFile {
  /** A write-back started by writeBehind() and not yet awaited; its failure, kept for sync(). */
  private writeBack: Promise<void> | undefined;
  private writeBackError: unknown;
  private closing: Promise<void> | undefined;

  private constructor(
    readonly path: string,
    private readonly file: StorageFile,
  ) {}

  /** Creates the file, or truncates it to nothing. */
  static async create(path: string, storage: Storage = localStorage): Promise<DurableFile> {
    crashPoint();
    return new DurableFile(path, await storage.open(path, 'replace'));
  }

  static async openReadWrite(path: string, storage: Storage = localStorage): Promise<DurableFile> {
    return new DurableFile(path, await storage.open(path, 'write'));
  }

  static async openRead(path: string, storage: Storage = localStorage): Promise<DurableFile> {
    return new DurableFile(path, await storage.open(path, 'read'));
  }

  /** Writes all of `data` at `position`; a short write is an error. */
  async write(data: Uint8Array, position: number): Promise<void> {
    crashPoint();
    await this.file.pwrite(data, position);
  }

  /** Fills `into` from `position`; returns the byte count read (less only at end of file). */
  read(into: Buffer, position: number): Promise<number> {
    return this.file.pread(into, position);
  }

  size(): Promise<number> {
    return this.file.size();
  }

  /**
   * Starts writing the data written so far to the device, in the background
   * (unless a write-back is still running), so that a long write's final
   * sync() finds little left to do. Promises nothing: only sync() makes
   * data durable, and it reports a failed write-back (Linux reports a
   * write-back error to one fsync only, which may be this one).
   */
  writeBehind(): void {
    if (this.writeBack !== undefined) return;
    this.writeBack = this.file.datasync().then(
      () => {
        this.writeBack = undefined;
      },
      (err: unknown) => {
        this.writeBackError ??= err;
        this.writeBack = undefined;
      },
    );
  }

  async sync(): Promise<void> {
    crashPoint();
    await this.writeBack;
    // Once a write-back failed, nothing written before it is known to be on the device: never again report success.
    if (this.writeBackError !== undefined) {
      const cause = fromFsError(this.writeBackError, 'write-back', this.path);
      throw new LifeboatError(cause.code, `fsync ${this.path}: a background write-back failed (${cause.message})`, { cause, details: cause.details });
    }
    await this.file.sync();
  }

  async truncate(length: number): Promise<void> {
    crashPoint();
    await this.file.truncate(length);
  }

  /** Closes once: later calls (an abort after a failed commit) return the first call's outcome. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.writeBack;
      await this.file.close();
    })();
    return this.closing;
  }
}

/** fsync of a folder: names created, renamed or removed in it survive a crash. */
export async function fsyncDir(dir: string, storage: Storage = localStorage): Promise<void> {
  crashPoint();
  await storage.syncDir(dir);
}

/** rename + fsync of the folder: after it returns, the new name survives a crash. */
export async function renameDurable(from: string, to: string, storage: Storage = localStorage): Promise<void> {
  crashPoint();
  await storage.rename(from, to);
  await fsyncDir(dirname(to), storage);
}

/** unlink + fsync of the folder; nothing to remove is not an error. */
export async function removeDurable(path: string, storage: Storage = localStorage): Promise<void> {
  crashPoint();
  await storage.remove(path);
  await fsyncDir(dirname(path), storage);
}

/**
 * Writes a whole small file atomically: temporary name, fsync, rename, fsync
 * of the folder. On failure the temporary file is removed (if it can be), so
 * a full disk or a failing device leaves no litter.
 */
export async function writeFileAtomic(path: string, data: Uint8Array, storage: Storage = localStorage): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    const f = await DurableFile.create(tmp, storage);
    try {
      await f.write(data, 0);
      await f.sync();
    } catch (err) {
      await f.close().catch(() => undefined);
      throw err;
    }
    await f.close();
    await renameDurable(tmp, path, storage);
  } catch (err) {
    await storage.remove(tmp).catch(() => undefined);
    throw err;
  }
}

/** The whole content of a small file (metadata: configs, job definitions, health records). */
export async function readWholeFile(path: string, storage: Storage = localStorage): Promise<Buffer> {
  const f = await storage.open(path, 'read');
  let out: Buffer;
  try {
    out = Buffer.alloc(await f.size());
    out = out.subarray(0, await f.pread(out, 0));
  } catch (err) {
    await f.close().catch(() => undefined);
    throw err;
  }
  await f.close();
  return out;
}
