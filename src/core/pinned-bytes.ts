/**
 * One buffer lent (a block of the memory cache): it stays as it is until the
 * borrower calls release(), once; after that its memory may hold other
 * bytes, so no view of `data` may be kept.
 */
export interface LentBuffer {
  readonly data: Buffer;
  release(): void;
}

/**
 * Bytes a disk lends for one read instead of giving them: `parts`, in order,
 * one for a read within one block and one per block for a read across
 * blocks, so nothing is copied into a buffer of the read's own. They stay as
 * they are until the borrower calls release(), once, when it no longer reads
 * them (the NBD server: when the kernel has taken its reply).
 */
export interface PinnedBytes {
  readonly parts: readonly Buffer[];
  /** The parts' bytes together. */
  readonly length: number;
  release(): void;
}

const nothing = (): void => undefined;

/** A buffer that is the borrower's own (memory never reused): releasing it does nothing. */
export function ownBuffer(data: Buffer): LentBuffer {
  return { data, release: nothing };
}

/** Bytes that are the borrower's own (a fresh buffer, or memory never reused): releasing them does nothing. */
export function unpinned(data: Buffer): PinnedBytes {
  return { parts: [data], length: data.length, release: nothing };
}

/** Bytes [from, to) of a lent buffer, released with it. */
export function pinnedRange(lent: LentBuffer, from: number, to: number): PinnedBytes {
  // The lease's release needs no `this`: handed on, not wrapped in a closure per read.
  return { parts: [lent.data.subarray(from, to)], length: to - from, release: lent.release };
}

/** Lent buffers' ranges, in order, released together. */
export function pinnedParts(parts: readonly Buffer[], leases: readonly LentBuffer[]): PinnedBytes {
  let length = 0;
  for (const p of parts) length += p.length;
  let released = false;
  return {
    parts,
    length,
    release: () => {
      if (released) return;
      released = true;
      for (const l of leases) l.release();
    },
  };
}
