/** A read-only virtual disk: what the restore and instant-recovery layers see. */
export interface VirtualDisk {
  readonly size: number;
  readonly blockSize: number;
  /**
   * Reads `length` bytes at `offset`; reading past the end is an error. The
   * buffer may be shared with a cache (or be the disk's zero block): callers
   * must copy before they modify it.
   */
  read(offset: number, length: number): Promise<Buffer>;
  /** Allocated (non-zero) blocks, in order. */
  allocatedBlocks(): Iterable<number>;
  /** Whole blocks (the last may be short), in the order asked, decoded ahead of the consumer. */
  readBlocks(blockIndexes: Iterable<number>): AsyncIterable<{ readonly blockIndex: number; readonly data: Buffer }>;
  close(): Promise<void>;
}
