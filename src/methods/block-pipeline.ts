/**
 * The block pipeline of a backup run: a disk read block by block, each block
 * checked for zeros, hashed, compared with the previous point and compressed
 * in the worker pool, and handed in order to a sink (a new backup file, or a
 * reverse-incremental full and its rollback).
 */
import type { BlockKeys } from '../crypto/seal.js';
import { LifeboatError, queued } from '../core/errors.js';
import { throwIfInterrupted } from '../core/cancel.js';
import type { BlockResult, BlockWorkerPool, CompressionSetting } from '../compress/index.js';
import type { CodecName } from '../format/constants.js';
import type { DiskSource } from '../source/index.js';

/** How far a run has read its disks (reported every 64 MiB and at each disk's end). */
export interface BackupProgress {
  readonly disk: number;
  readonly diskCount: number;
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

type Outcome =
  { readonly kind: 'skip' } | { readonly kind: 'zero'; readonly bi: number } | { readonly kind: 'data'; readonly bi: number; readonly r: BlockResult };

/** Where the pipeline puts changed blocks: a new backup file, or (reverse incremental) the full and a rollback. */
export interface BlockSink {
  addBlock(disk: number, blockIndex: number, codec: CodecName, stored: Buffer, digest: Buffer): Promise<void>;
  addZero(disk: number, blockIndex: number): void | Promise<void>;
  /** An encrypted repository's keys: blocks are digested with its keyed digest and sealed in the pool. */
  readonly keys?: BlockKeys | undefined;
}

/** What the pipeline needs of the point it compares with: each block's digest (null = zeros). */
export interface PreviousPoint {
  readonly size: number;
  digestOf(blockIndex: number): Buffer | null;
}

/**
 * The block pipeline of one disk: read → zero check → (worker) hash, compare
 * with the previous point, compress → write in order. A bounded window of
 * blocks is in flight, reads included (several requests to an NBD server, or
 * preads, at once), so memory is window × block size whatever the disk size,
 * and each block is read straight into the buffer the worker gets.
 */
export async function backupDisk(
  src: DiskSource,
  disk: number,
  diskCount: number,
  writer: BlockSink,
  prev: PreviousPoint | null,
  blockSize: number,
  compression: CompressionSetting,
  pool: BlockWorkerPool,
  totals: { bytesRead: number; blocksStored: number; blocksZero: number; blocksUnchanged: number },
  onProgress: ((p: BackupProgress) => void) | undefined,
  signal?: AbortSignal,
): Promise<void> {
  const blockCount = Math.ceil(src.size / blockSize);
  const zeros = Buffer.alloc(blockSize);
  const free: ArrayBuffer[] = [];
  const queue: Promise<Outcome>[] = [];
  const window = pool.size * 4;
  let lastReport = 0;

  const drainOne = async (): Promise<void> => {
    const o = await queue.shift()!;
    if (o.kind === 'zero') await writer.addZero(disk, o.bi);
    if (o.kind !== 'data') return;
    free.push(o.r.buffer);
    if (o.r.unchanged) totals.blocksUnchanged += 1;
    else {
      await writer.addBlock(disk, o.bi, o.r.codec, Buffer.from(o.r.stored!), o.r.digest);
      totals.blocksStored += 1;
    }
  };

  const readBlock = async (bi: number, offset: number, len: number): Promise<Outcome> => {
    const ab = free.pop() ?? new ArrayBuffer(blockSize);
    const buf = Buffer.from(ab, 0, len);
    const got = await src.read(buf, offset);
    if (got !== len) {
      throw new LifeboatError('LFB_ERR_DISK_READ', `disk ${src.path} ended at ${offset + got} while reading block ${bi}; its size changed during the backup`, {
        details: { disk: src.path, offset: offset + got },
      });
    }
    totals.bytesRead += len;
    if (buf.equals(zeros.subarray(0, len))) {
      // Zero blocks are never stored; an increment records only that a block became zero.
      free.push(ab);
      totals.blocksZero += 1;
      return prev !== null && prev.digestOf(bi) !== null ? { kind: 'zero', bi } : { kind: 'skip' };
    }
    const r = await pool.run(ab, len, prev === null ? null : prev.digestOf(bi), compression, writer.keys);
    return { kind: 'data', bi, r };
  };

  for (let bi = 0; bi < blockCount; bi++) {
    if (signal?.aborted === true) {
      // Between blocks is safe: once the reads and hashing in flight settle, the caller's cleanup drops the unfinished file.
      await Promise.allSettled(queue);
      throwIfInterrupted(signal);
    }
    const offset = bi * blockSize;
    const len = Math.min(blockSize, src.size - offset);
    if (prev !== null && prev.size === src.size && src.isUnchanged?.(offset, len) === true) {
      // Changed-block tracking: not written since the previous point, so not even read.
      totals.blocksUnchanged += 1;
    } else if (src.isHole(offset, len)) {
      // A hole of a sparse image: zeros, known without reading them.
      totals.bytesRead += len;
      totals.blocksZero += 1;
      if (prev !== null && prev.digestOf(bi) !== null) queue.push(Promise.resolve({ kind: 'zero', bi }));
    } else {
      queue.push(queued(readBlock(bi, offset, len)));
    }
    while (queue.length >= window) await drainOne();
    if (onProgress && (offset + len - lastReport >= 64 * 1024 * 1024 || bi === blockCount - 1)) {
      lastReport = offset + len;
      onProgress({ disk, diskCount, bytesDone: offset + len, bytesTotal: src.size });
    }
  }
  while (queue.length > 0) await drainOne();
}
