import { join } from 'node:path';
import { newUuid } from '../core/ids.js';
import { FILE_EXTENSIONS, FORMAT_CURRENT } from '../format/constants.js';
import { removeDurable } from '../storage/index.js';
import { RestorePointDisk } from '../repository/restore-point-disk.js';
import { BackupFileWriter } from '../repository/backup-file-writer.js';
import type { JobDefinition } from '../repository/job.js';
import { filesForPoint, type JobState } from '../repository/job-state.js';
import { LifeboatError } from '../core/errors.js';
import { BlockWorkerPool } from '../compress/block-pool.js';
import { copyVerified, type CopyStep } from './verified-copy.js';

export interface SyntheticFullResult {
  readonly pointId: string;
  readonly file: string;
  readonly removedIncrement: string;
  readonly blocksCopied: number;
  readonly bytesCopied: number;
}

/**
 * Synthetic full (Veeam's order): the increment of today's run is already
 * written; a new full holding the same point is built from the chain, without
 * reading the source, by copying each block's stored bytes as they are (no
 * recompression; each is verified in a worker before it is copied, so damage
 * never spreads: copyVerified); then the increment is deleted. One read and one write per block.
 *
 * Crash safety: the full is written under a temporary name and renamed only
 * when complete and synced. Until then the chain is untouched; after it, the
 * point exists twice, and a scan treats the increment as redundant (the full
 * supersedes it), so the next run deletes it if we die before doing so.
 */
export async function synthesizeFull(
  job: JobDefinition,
  dir: string,
  state: JobState,
  pointId: string,
  fileStamp: string,
  opts: { pool?: BlockWorkerPool } = {},
): Promise<SyntheticFullResult> {
  const files = filesForPoint(state, pointId);
  const top = files?.[files.length - 1];
  if (!files || !top || top.root.kind !== 'increment')
    throw new LifeboatError('LFB_ERR_INTERNAL', `point ${pointId} is not an increment to synthesize a full from`);
  let writer: BackupFileWriter | undefined;
  // Blocks are checked in workers (decompress + SHA-256) while the main thread reads and writes.
  const pool = opts.pool ?? new BlockWorkerPool();
  try {
    const blockSize = files[0]!.header.blockSize;
    const diskSizes = top.root.diskSizes;
    const name = `${fileStamp}_${pointId}${FILE_EXTENSIONS.full}`;
    writer = await BackupFileWriter.create(
      join(dir, name),
      {
        formatVersion: FORMAT_CURRENT,
        kind: 'full',
        blockSize,
        createdAtMs: top.root.createdAtMs,
        fileId: newUuid(),
        chainId: newUuid(),
        jobId: job.jobId,
        diskSizes,
      },
      state.storage,
    );
    let blocksCopied = 0;
    const w = writer;
    for (let d = 0; d < diskSizes.length; d++) {
      // The point's block map (the same one reads use) says which file holds each block.
      const point = await RestorePointDisk.open(files, d, { cacheBytes: 0, storage: state.storage });
      try {
        const steps = function* (): Iterable<CopyStep<number>> {
          for (const bi of point.allocatedBlocks()) {
            const { file, slot } = point.storedBlock(bi)!;
            yield { copy: { file, table: file.root.tables[d]!, slot, rawLength: point.rawLength(bi) }, tag: bi };
          }
        };
        await copyVerified(pool, steps(), async (bi, block) => {
          await w.addBlock(d, bi, block!.codec, block!.stored, block!.digest);
          blocksCopied += 1;
        });
      } finally {
        await point.close();
      }
    }
    const bytesCopied = writer.storedBytes;
    await writer.commit({
      kind: 'full',
      seq: top.root.seq,
      createdAtMs: top.root.createdAtMs,
      pointId,
      parentPointId: null,
      mergedCount: 0,
      diskSizes,
      meta: {
        ...top.root.meta,
        trigger: `synthetic full (${top.root.meta.trigger ?? 'incremental run'} made first)`,
        synthesizedFrom: { chainId: top.header.chainId, previousPointId: top.root.parentPointId ?? files[0]!.root.pointId },
      },
    });
    writer = undefined;
    await removeDurable(top.path, state.storage);
    return { pointId, file: name, removedIncrement: top.name, blocksCopied, bytesCopied };
  } finally {
    if (writer) await writer.abort();
    if (pool !== opts.pool) await pool.close();
  }
}
