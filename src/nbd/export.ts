import type { PinnedBytes } from '../core/pinned-bytes.js';

/** What the NBD server serves; it knows nothing of backups (recovery/ provides these). */
export interface Extent {
  readonly length: number;
  /** Reads as zeros and holds no data (NBD_STATE_HOLE | NBD_STATE_ZERO). */
  readonly hole: boolean;
}

export interface NbdDevice {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** As read, the bytes lent until release(), which the server calls once the kernel has taken the reply. */
  readPinned?(offset: number, length: number): Promise<PinnedBytes>;
  write(offset: number, data: Buffer): Promise<void>;
  flush(): Promise<void>;
  /** Allocation from `offset`, covering at least one byte and at most `length`. */
  extents(offset: number, length: number): Extent[];
}

export interface NbdExports {
  list(): readonly { readonly name: string; readonly description: string }[];
  open(name: string): NbdDevice | undefined;
}
