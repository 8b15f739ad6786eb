import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { dirname } from 'node:path';
import { crashPoint } from '../core/crash-point.js';
import { fromFsError } from '../core/errors.js';

/**
 * The storage seam for backup files on a local filesystem. Every step that
 * changes what is on disk passes a crash point, so the crash tests can kill
 * the process between any two of them. Errors leave here as LifeboatErrors
 * (ENOSPC → LFB_ERR_NO_SPACE): higher layers never look at errno.
 */
export class DurableFile {
  /** A write-back started by writeBehind() and not yet awaited; its failure, kept for sync(). */
  private writeBack: Promise<void> | undefined;
  private writeBackError: unknown;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  /**
   * The descriptor, for block workers that read stored blocks themselves
   * (one thread hop per block instead of two). Valid until close().
   */
  get fd(): number {
    return this.fh.fd;
  }

  static async create(path: string): Promise<DurableFile> {
    crashPoint();
    try {
      return new DurableFile(path, await open(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_TRUNC, 0o644));
    } catch (err) {
      throw fromFsError(err, 'create', path);
    }
  }

  static async openReadWrite(path: string): Promise<DurableFile> {
    try {
      return new DurableFile(path, await open(path, fsc.O_RDWR));
    } catch (err) {
      throw fromFsError(err, 'open', path);
    }
  }

  static async openRead(path: string): Promise<DurableFile> {
    try {
      return new DurableFile(path, await open(path, fsc.O_RDONLY));
    } catch (err) {
      throw fromFsError(err, 'open', path);
    }
  }

  /** Writes all of `data` at `position` (loops over short writes). */
  async write(data: Uint8Array, position: number): Promise<void> {
    crashPoint();
    try {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await this.fh.write(data, done, data.length - done, position + done);
        if (bytesWritten <= 0) throw new Error('short write');
        done += bytesWritten;
      }
    } catch (err) {
      throw fromFsError(err, 'write', this.path);
    }
  }

  /** Fills `into` from `position`; returns the byte count read (less only at end of file). */
  async read(into: Buffer, position: number): Promise<number> {
    try {
      let done = 0;
      while (done < into.length) {
        const { bytesRead } = await this.fh.read(into, done, into.length - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done;
    } catch (err) {
      throw fromFsError(err, 'read', this.path);
    }
  }

  async size(): Promise<number> {
    return (await this.fh.stat()).size;
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
    this.writeBack = this.fh.datasync().then(
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
    try {
      await this.writeBack;
      if (this.writeBackError !== undefined) throw this.writeBackError;
      await this.fh.sync();
    } catch (err) {
      throw fromFsError(err, 'fsync', this.path);
    }
  }

  async truncate(length: number): Promise<void> {
    crashPoint();
    await this.fh.truncate(length);
  }

  async close(): Promise<void> {
    await this.writeBack;
    await this.fh.close();
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  crashPoint();
  const fh = await open(dir, fsc.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** rename + fsync of the folder: after it returns, the new name survives a crash. */
export async function renameDurable(from: string, to: string): Promise<void> {
  crashPoint();
  try {
    await rename(from, to);
  } catch (err) {
    throw fromFsError(err, 'rename', from);
  }
  await fsyncDir(dirname(to));
}

export async function removeDurable(path: string): Promise<void> {
  crashPoint();
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromFsError(err, 'remove', path);
  }
  await fsyncDir(dirname(path));
}

/** Writes a whole small file atomically: temp name, fsync, rename, fsync folder. */
export async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  const f = await DurableFile.create(tmp);
  try {
    await f.write(data, 0);
    await f.sync();
  } finally {
    await f.close();
  }
  await renameDurable(tmp, path);
}
