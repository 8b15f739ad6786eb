/**
 * An in-memory disk for the fuzz targets that records every call outside its
 * bounds: the servers (NBD, the NFS datastore) must check a client's ranges
 * before they reach a device, so any such call is a finding.
 */
import type { Extent } from '../../blockdev/block-device.js';

export class CheckedDisk {
  private data: Buffer | undefined;

  constructor(
    readonly size: number,
    /** Where violations are written; the target turns them into findings. */
    private readonly violations: string[],
  ) {}

  private check(op: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      this.violations.push(`${op}(${offset}, ${length}) on a disk of ${this.size} bytes`);
      throw new RangeError(`${op} outside the disk`);
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check('read', offset, length);
    return this.data ? Buffer.from(this.data.subarray(offset, offset + length)) : Buffer.alloc(length);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.check('write', offset, data.length);
    this.data ??= Buffer.alloc(this.size);
    data.copy(this.data, offset);
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}

  /** Data in the first 4 KiB-aligned piece, a hole after (so replies carry more than one extent). */
  extents(offset: number, length: number): Extent[] {
    this.check('extents', offset, length);
    const first = Math.min(length, Math.max(1, 4096 - (offset % 4096)));
    return first < length
      ? [
          { length: first, hole: false },
          { length: length - first, hole: true },
        ]
      : [{ length, hole: this.data === undefined }];
  }
}
