/**
 * Bytes a disk lends instead of giving: they stay as they are until the
 * borrower calls release(), once, when it no longer reads them (the NBD
 * server: when the kernel has taken its reply). After that the disk may
 * reuse the memory for other bytes, so no view of `data` may be kept.
 */
export interface PinnedBytes {
  readonly data: Buffer;
  release(): void;
}

const nothing = (): void => undefined;

/** Bytes that are the borrower's own (a fresh buffer, or memory never reused): releasing them does nothing. */
export function unpinned(data: Buffer): PinnedBytes {
  return { data, release: nothing };
}
