import { queued } from '../core/errors.js';
import { throwIfInterrupted } from '../core/cancel.js';
import type { CodecName } from '../format/constants.js';
import type { BlockTable } from '../format/index.js';
import type { BlockWorkerPool } from '../compress/block-pool.js';
import type { BackupFileReader } from '../repository/backup-file.js';

/** A stored block to copy: where it is (file, its table of the disk, entry) and how long it reads. */
export interface StoredBlockRef {
  readonly file: BackupFileReader;
  readonly table: BlockTable;
  readonly slot: number;
  readonly rawLength: number;
}

/** One step of a copy, in the order the destination takes them: a block to copy, or anything else (a zero entry) passed through in order. */
export type CopyStep<T> = { readonly copy: StoredBlockRef; readonly tag: T } | { readonly copy?: undefined; readonly tag: T };

/** A verified block, ready to be written as it is stored. */
export interface VerifiedBlock {
  readonly codec: CodecName;
  readonly stored: Buffer;
  readonly digest: Buffer;
}

/**
 * The one verified copy of stored blocks (synthetic full, merge, reverse run,
 * transform, compact, backup copy). The main thread reads each block's stored
 * bytes and a worker of `pool` decompresses them and checks the SHA-256 of
 * the plaintext against the digest of the block table; the bytes are then
 * handed to `write` as they are stored (no recompression). A window of
 * blocks is in flight so reading, checking and writing overlap; `write`
 * sees the steps in their order. A damaged block throws
 * LFB_ERR_BLOCK_CORRUPT (naming file, disk, block, offset) before anything
 * of it is written, so damage never spreads.
 */
export async function copyVerified<T>(
  pool: BlockWorkerPool,
  steps: Iterable<CopyStep<T>>,
  write: (tag: T, block: VerifiedBlock | undefined) => Promise<void> | void,
  signal?: AbortSignal,
): Promise<void> {
  const window = pool.size * 4;
  const queue: Promise<{ tag: T; block: VerifiedBlock | undefined }>[] = [];
  const start = async (step: CopyStep<T>): Promise<{ tag: T; block: VerifiedBlock | undefined }> => {
    const ref = step.copy;
    if (ref === undefined) return { tag: step.tag, block: undefined };
    const { file, table, slot } = ref;
    const digest = table.digest(slot);
    const r = await pool.verifyStored(await file.readStored(table, slot), table.codec(slot), ref.rawLength, digest, file.keys);
    if (r.problem !== null) throw file.blockError(table, slot, r.problem);
    return { tag: step.tag, block: { codec: table.codec(slot), stored: r.stored, digest: Buffer.from(digest) } };
  };
  try {
    for (const step of steps) {
      throwIfInterrupted(signal);
      queue.push(queued(start(step)));
      while (queue.length >= window) {
        const done = await queue.shift()!;
        await write(done.tag, done.block);
      }
    }
    while (queue.length > 0) {
      const done = await queue.shift()!;
      await write(done.tag, done.block);
    }
  } finally {
    // Reads still in flight must end before the caller closes their files; their failures are already reported.
    await Promise.allSettled(queue);
  }
}
