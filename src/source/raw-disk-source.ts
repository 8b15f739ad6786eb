import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { LifeboatError } from '../core/errors.js';
import { nextDataExtent } from './data-extents.js';

/** A disk to back up: its size and positional reads. Opened read-only, always. */
export interface DiskSource {
  readonly path: string;
  readonly size: number;
  /**
   * Fills `into` with the bytes at `offset` (short only at the end of the
   * disk). Calls overlap: the backup pipeline keeps several reads in flight.
   */
  read(into: Buffer, offset: number): Promise<number>;
  /**
   * Whether [offset, offset+length) is known to be a hole (reads as zeros
   * without storage). False when unknown: the caller reads and checks.
   */
  isHole(offset: number, length: number): boolean;
  /**
   * Changed-block tracking: whether the range is known not to have been
   * written since the previous point (so it is not read at all). Absent or
   * false when unknown.
   */
  isUnchanged?(offset: number, length: number): boolean;
  close(): Promise<void>;
}

/** A raw image file (sparse or not) or a block device. */
export class RawDiskSource implements DiskSource {
  /** The data extent at or after the last query, cached: one lseek pair per extent. */
  private extent: [number, number] | undefined | null = null;
  private extentFrom = -1;

  private constructor(
    readonly path: string,
    readonly size: number,
    private readonly fh: FileHandle,
    private readonly sparseAware: boolean,
  ) {}

  isHole(offset: number, length: number): boolean {
    if (!this.sparseAware) return false;
    const end = offset + length;
    if (this.extentFrom < 0 || offset < this.extentFrom || (this.extent !== undefined && this.extent !== null && offset >= this.extent[1])) {
      this.extent = nextDataExtent(this.fh.fd, offset, this.size);
      this.extentFrom = offset;
      if (this.extent === null) return false;
    }
    if (this.extent === null) return false;
    if (this.extent === undefined) return true; // only holes from here on
    return this.extent[0] >= end;
  }

  static async open(path: string): Promise<RawDiskSource> {
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      throw new LifeboatError(
        'LFB_ERR_DISK_NOT_FOUND',
        `disk ${path} cannot be opened: ${(err as NodeJS.ErrnoException).code ?? String(err)}; check the path given with --disk`,
        { cause: err, details: { disk: path } },
      );
    }
    if (!st.isFile() && !st.isBlockDevice()) {
      throw new LifeboatError('LFB_ERR_DISK_NOT_FOUND', `disk ${path} is neither a raw image file nor a block device`, { details: { disk: path } });
    }
    const size = st.isBlockDevice() ? await blockDeviceSize(st.rdev) : st.size;
    const fh = await open(path, 'r');
    return new RawDiskSource(path, size, fh, st.isFile());
  }

  async read(into: Buffer, offset: number): Promise<number> {
    let done = 0;
    try {
      while (done < into.length) {
        const { bytesRead } = await this.fh.read(into, done, into.length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (err) {
      throw new LifeboatError('LFB_ERR_DISK_READ', `reading disk ${this.path} at offset ${offset + done} failed: ${(err as Error).message}`, {
        cause: err,
        details: { disk: this.path, offset: offset + done },
      });
    }
    return done;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** fstat reports 0 bytes for block devices; sysfs knows their size in 512-byte sectors. */
async function blockDeviceSize(rdev: number): Promise<number> {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((Math.floor(rdev / 2 ** 20) & 0xfff) << 8);
  const sectors = Number((await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
  return sectors * 512;
}
