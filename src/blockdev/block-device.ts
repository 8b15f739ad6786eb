import type { PinnedBytes } from '../core/pinned-bytes.js';

/**
 * The disk seam between instant recovery and the protocols (nbdkit's
 * next_ops, reduced): NFS and NBD serve a BlockDevice and know nothing of
 * backups; only recovery/ stacks a restore point under an overlay.
 */
/** A run of bytes: data, or a hole that reads as zeros and holds nothing. */
export interface Extent {
  readonly length: number;
  readonly hole: boolean;
}

export interface ReadableDisk {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** As read, the bytes lent until release() (a disk whose memory is reused); absent = read's bytes are the caller's. */
  readPinned?(offset: number, length: number): Promise<PinnedBytes>;
  /** Allocation from `offset` (at least one extent, covering at most `length`); absent = all data. */
  extents?(offset: number, length: number): Extent[];
}

/** Appends an extent, merging it with the previous one of the same kind. */
export function pushExtent(list: Extent[], length: number, hole: boolean): void {
  const last = list[list.length - 1];
  if (last && last.hole === hole) list[list.length - 1] = { length: last.length + length, hole };
  else list.push({ length, hole });
}

export interface BlockDevice extends ReadableDisk {
  write(offset: number, data: Buffer): Promise<void>;
  /** Makes every write so far durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
