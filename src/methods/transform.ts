import { join } from 'node:path';
import { newUuid } from '../core/ids.js';
import { FILE_EXTENSIONS, FORMAT_CURRENT } from '../format/constants.js';
import { removeDurable, type Storage } from '../storage/index.js';
import { BackupFileReader } from '../repository/backup-file.js';
import { BackupFileWriter } from '../repository/backup-file-writer.js';
import type { JobDefinition } from '../repository/job.js';
import { filesForPoint, type Chain, type ChainFile, type JobState } from '../repository/job-state.js';
import { refuseSealedJob } from '../repository/immutability.js';
import { RestorePointDisk } from '../repository/restore-point-disk.js';
import { fileStamp } from './backup-run.js';
import { BlockWorkerPool } from '../compress/block-pool.js';
import { copyVerified, type CopyStep } from './verified-copy.js';

export interface TransformResult {
  /** The chain that became rollbacks (its files are gone). */
  readonly chainId: string;
  readonly into: string;
  readonly rollbacks: readonly string[];
  readonly removed: readonly string[];
  readonly blocksCopied: number;
  readonly bytesCopied: number;
}

/**
 * The chain a synthetic full of `newer` was built from, when it still exists:
 * with --transform-to-rollbacks it is turned into rollbacks of that full.
 */
export function chainToTransform(state: JobState): { older: Chain; newer: Chain } | undefined {
  for (let i = state.chains.length - 1; i > 0; i--) {
    const newer = state.chains[i]!;
    const from = newer.full.root.meta.synthesizedFrom;
    if (!from) continue;
    const older = state.chains.find((c) => c.chainId === from.chainId);
    const tip = older && [older.full, ...older.increments].at(-1)!.root.pointId;
    if (older && tip === from.previousPointId) return { older, newer };
  }
  return undefined;
}

/** Why a chain cannot become rollbacks of the next full, or undefined if it can. */
export function transformObstacle(older: Chain, newer: Chain): string | undefined {
  const files = [...older.rollbacks, older.full, ...older.increments];
  if (files.some((f) => f.header.blockSize !== newer.full.header.blockSize)) return 'the chains differ in block size';
  if (files.some((f) => f.root.diskSizes.length !== newer.full.root.diskSizes.length)) return 'the chains differ in their number of disks';
  return undefined;
}

/**
 * Transform (Veeam's "transform previous backup chains into rollbacks"): after
 * a synthetic full, the chain it was built from becomes reverse increments of
 * it, so the job keeps one full. For each point of the old chain, newest
 * first, a rollback is written holding the blocks in which that point differs
 * from the next newer one (found by comparing digests in the block maps; the
 * stored bytes are verified and copied without recompression). Then the old
 * chain's full and increments are deleted, newest first. Rollbacks the old
 * chain had from an earlier transform stay as they are: they lead back from
 * the old full's point, which is now a rollback too (the scan links them on).
 *
 * Crash safety: each rollback is written under a temporary name and renamed
 * when complete. While the old chain exists, its points are held twice; the
 * scan treats rollbacks of a half-done transform as redundant (the old chain
 * is whole) and an old chain whose every point has a rollback as redundant
 * (the transform finished), so the next run cleans up and, in the first case,
 * starts the transform again. Every point stays restorable throughout.
 */
export async function transformToRollbacks(
  job: JobDefinition,
  dir: string,
  state: JobState,
  older: Chain,
  newer: Chain,
  /** A pool to use instead of starting one (kept open). */
  opts: { pool?: BlockWorkerPool | undefined } = {},
): Promise<TransformResult> {
  await refuseSealedJob(dir, state.storage, 'a transform into rollbacks');
  // Oldest first. The old chain's own rollbacks (from an earlier transform)
  // need no rewriting: they lead to the old full's point, which becomes a rollback.
  const points = [older.full, ...older.increments];
  let above: ChainFile[] = [newer.full];
  let abovePointId = newer.full.root.pointId;
  const written: string[] = [];
  let blocksCopied = 0;
  let bytesCopied = 0;
  // Blocks are checked in workers (decompress + SHA-256) while the main thread reads and writes.
  const pool = opts.pool ?? new BlockWorkerPool();
  try {
    for (let k = points.length - 1; k >= 0; k--) {
      const p = points[k]!;
      const name = `${fileStamp(new Date(p.root.createdAtMs))}_${p.root.pointId}${FILE_EXTENSIONS.rollback}`;
      const copied = await writeRollback(job, dir, state.storage, filesForPoint(state, p.root.pointId)!, above, p, newer.chainId, abovePointId, name, pool);
      blocksCopied += copied.blocks;
      bytesCopied += copied.bytes;
      written.push(name);
      const r = await BackupFileReader.open(join(dir, name), { storage: state.storage });
      await r.close();
      above = [...above, { name, path: join(dir, name), header: r.header, root: r.root }];
      abovePointId = p.root.pointId;
    }
  } finally {
    if (pool !== opts.pool) await pool.close();
  }
  // Increments depend on the full: newest first, the full last.
  const removed: string[] = [];
  for (const f of [...[...older.increments].reverse(), older.full]) {
    await removeDurable(f.path, state.storage);
    removed.push(f.name);
  }
  return { chainId: older.chainId, into: newer.chainId, rollbacks: written, removed, blocksCopied, bytesCopied };
}

/** One rollback: the blocks in which `point` (read through `pointFiles`) differs from the point `above` reads as. */
async function writeRollback(
  job: JobDefinition,
  dir: string,
  storage: Storage,
  pointFiles: readonly ChainFile[],
  above: readonly ChainFile[],
  point: ChainFile,
  chainId: string,
  parentPointId: string,
  name: string,
  pool: BlockWorkerPool,
): Promise<{ blocks: number; bytes: number }> {
  const { root } = point;
  let writer: BackupFileWriter | undefined = await BackupFileWriter.create(
    join(dir, name),
    {
      formatVersion: FORMAT_CURRENT,
      kind: 'rollback',
      blockSize: point.header.blockSize,
      createdAtMs: root.createdAtMs,
      fileId: newUuid(),
      chainId,
      jobId: job.jobId,
      diskSizes: root.diskSizes,
    },
    storage,
  );
  let blocks = 0;
  try {
    for (let d = 0; d < root.diskSizes.length; d++) {
      const mine = await RestorePointDisk.open(pointFiles, d, { cacheBytes: 0, storage });
      const theirs = await RestorePointDisk.open(above, d, { cacheBytes: 0, storage }).catch(async (err: unknown) => {
        await mine.close().catch(() => undefined);
        throw err;
      });
      try {
        const steps = function* (): Iterable<CopyStep<number>> {
          for (let bi = 0; bi < mine.blockCount; bi++) {
            const digest = mine.digestOf(bi);
            // Past the newer point's end (or at a last block cut at another
            // length), what the layers below hold is not what the newer point
            // reads as: always write an entry there.
            if (bi < theirs.blockCount && mine.rawLength(bi) === theirs.rawLength(bi)) {
              const other = theirs.digestOf(bi);
              if (digest === null ? other === null : other !== null && digest.equals(other)) continue;
            }
            if (digest === null) {
              yield { tag: bi };
              continue;
            }
            const { file, slot } = mine.storedBlock(bi)!;
            yield { copy: { file, table: file.root.tables[d]!, slot, rawLength: mine.rawLength(bi) }, tag: bi };
          }
        };
        const w = writer;
        // Verified in a worker before it is copied: damage must not spread into the rollback.
        await copyVerified(pool, steps(), async (bi, block) => {
          if (block === undefined) w.addZero(d, bi);
          else {
            await w.addBlock(d, bi, block.codec, block.stored, block.digest);
            blocks += 1;
          }
        });
      } finally {
        await Promise.all([mine.close(), theirs.close()]);
      }
    }
    const bytes = writer.storedBytes;
    await writer.commit({
      kind: 'rollback',
      seq: root.seq,
      createdAtMs: root.createdAtMs,
      pointId: root.pointId,
      parentPointId,
      mergedCount: 0,
      diskSizes: root.diskSizes,
      meta: { vm: root.meta.vm, ...(root.meta.trigger === undefined ? {} : { trigger: root.meta.trigger }) },
    });
    writer = undefined;
    return { blocks, bytes };
  } finally {
    if (writer) await writer.abort();
  }
}
