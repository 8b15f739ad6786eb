import type { Extent, ReadableDisk } from './block-device.js';

/**
 * A disk of zeros holding nothing: the base under the overlay of an empty
 * disk added to a session (`instant add-disk`). Reads share one zero buffer.
 */
export class ZeroDisk implements ReadableDisk {
  private zeros = Buffer.alloc(0);

  constructor(readonly size: number) {}

  read(offset: number, length: number): Promise<Buffer> {
    if (this.zeros.length < length) this.zeros = Buffer.alloc(Math.max(length, 1024 * 1024));
    return Promise.resolve(this.zeros.subarray(0, length));
  }

  extents(_offset: number, length: number): Extent[] {
    return [{ length, hole: true }];
  }
}
