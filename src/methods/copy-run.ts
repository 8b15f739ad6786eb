import { join } from 'node:path';
import { newPointId, newUuid } from '../core/ids.js';
import type { Clock } from '../core/clock.js';
import { throwIfInterrupted } from '../core/cancel.js';
import { BlockWorkerPool } from '../compress/block-pool.js';
import { FILE_EXTENSIONS, FORMAT_CURRENT, type FileKind } from '../format/constants.js';
import type { RootMeta } from '../format/index.js';
import { lockAt } from '../storage/index.js';
import { BackupFileWriter } from '../repository/backup-file-writer.js';
import { loadJob, type JobDefinition } from '../repository/job.js';
import { cleanupJob, filesForPoint, scanJob, writeVbm, type Chain, type JobState, type PointInfo } from '../repository/job-state.js';
import { RestorePointDisk } from '../repository/restore-point-disk.js';
import { Repository } from '../repository/repository.js';
import { guardImmutableBackup, sealJobFiles } from '../repository/immutability.js';
import { gfsFullDue } from '../retention/plan.js';
import { applyRetention, planChains, type AppliedAction } from './retention-run.js';
import { fileStamp } from './backup-run.js';
import { closeAll } from './close-all.js';
import { checkTarget, ensureTargetJob, loadCopyJob, type CopyJobDefinition } from './copy-job.js';
import { copyVerified, type CopyStep } from './verified-copy.js';

/** What a copied point records of the point it is a copy of (in its root's meta). */
export interface CopyOf {
  readonly repoId: string;
  readonly jobId: string;
  readonly pointId: string;
  /** The source point's sequence number: points of the source job with a higher one are not copied yet. */
  readonly seq: number;
}

type CopiedMeta = RootMeta & { readonly copyOf?: CopyOf };

export interface CopyProgress {
  /** The source point being copied, and which of the run's points it is (1-based). */
  readonly sourcePointId: string;
  readonly index: number;
  readonly count: number;
  readonly disk: number;
  readonly blocksDone: number;
  readonly blocksTotal: number;
}

export interface CopyOptions {
  readonly clock: Clock;
  /** Wait this long for a backup (source) or another copy (target) of the job to finish instead of failing at once. */
  readonly waitMs?: number;
  readonly onProgress?: (p: CopyProgress) => void;
  readonly workers?: number;
  readonly pool?: BlockWorkerPool;
  readonly signal?: AbortSignal;
}

export interface CopiedPoint {
  readonly sourcePointId: string;
  readonly pointId: string;
  readonly kind: FileKind;
  readonly file: string;
  readonly createdAt: string;
  readonly blocksCopied: number;
  readonly blocksUnchanged: number;
  readonly blocksZero: number;
  readonly bytesCopied: number;
}

export interface CopyResult {
  readonly copy: string;
  readonly job: string;
  readonly target: string;
  readonly copied: readonly CopiedPoint[];
  readonly cleanedUp: readonly string[];
  readonly retention: readonly AppliedAction[];
}

/** The source point a target file is a copy of, if it is one. */
export function copyOfFile(meta: RootMeta): CopyOf | undefined {
  return (meta as CopiedMeta).copyOf;
}

/** Files of the target holding its points (rollbacks never: the target is forward). */
function chainFiles(c: Chain): Chain['increments'] {
  return [c.full, ...c.increments];
}

/**
 * `lifeboat copy run`: copies every point of the source job newer than the
 * newest one the target holds a copy of, oldest first, then applies the
 * target job's retention on the target. Points are copied as stored blocks
 * (no recompression), each verified in a worker before it is written; an
 * increment holds only the blocks whose digest differs from the target's
 * previous point (the block tables say so: nothing is decompressed to
 * compare). A point is written under a temporary name and renamed when
 * complete: killed at any moment, the target holds only whole points and the
 * next run redoes the unfinished one. The source job's lock is held while
 * its files are read (no merge or retention removes them under the copy),
 * the target job's while its files are written.
 */
export async function runCopy(sourceRoot: string, name: string, opts: CopyOptions): Promise<CopyResult> {
  const source = await Repository.open(sourceRoot);
  const def = await loadCopyJob(source, name);
  const sourceJob = await loadJob(source, def.job);
  const target = await Repository.open(def.toRepo);
  checkTarget(source, target);
  const targetJob = await ensureTargetJob(target, def, sourceJob, opts.clock.now());
  await guardImmutableBackup(target, targetJob);
  const targetDir = target.jobDir(def.job);
  const sourceDir = source.jobDir(def.job);
  const waitMs = opts.waitMs ?? 0;
  const targetLock = await lockAt(target.storage, join(targetDir, 'lock'), `job "${def.job}" of ${target.root}`, { waitMs, signal: opts.signal });
  try {
    const sourceLock = await lockAt(source.storage, join(sourceDir, 'lock'), `job "${def.job}"`, { waitMs, signal: opts.signal });
    const pool = opts.pool ?? new BlockWorkerPool(opts.workers);
    try {
      let state = await scanJob(targetDir, target.storage);
      const cleanedUp = await cleanupJob(state);
      if (cleanedUp.length > 0) state = await scanJob(targetDir, target.storage);
      await sealJobFiles(target, targetJob, state, opts.clock.now());
      const sourceState = await scanJob(sourceDir, source.storage);
      const todo = pointsToCopy(state, sourceState);
      // A stop that came while the locks were awaited holds even when there is nothing to copy.
      throwIfInterrupted(opts.signal);
      const copied: CopiedPoint[] = [];
      for (const [i, point] of todo.entries()) {
        throwIfInterrupted(opts.signal);
        const progress =
          opts.onProgress &&
          ((p: Omit<CopyProgress, 'sourcePointId' | 'index' | 'count'>) =>
            opts.onProgress!({ sourcePointId: point.id, index: i + 1, count: todo.length, ...p }));
        copied.push(await copyPoint({ def, source, sourceJob, targetJob, sourceState, state, point, pool, progress, signal: opts.signal }));
        state = await scanJob(targetDir, target.storage);
        await sealJobFiles(target, targetJob, state, opts.clock.now());
      }
      await sourceLock.release();
      const now = opts.clock.now();
      const retention = await applyRetention(targetJob, targetDir, state, now, { immutableDays: target.config.immutableDays, pool });
      state = await scanJob(targetDir, target.storage);
      await writeVbm(targetJob, state, now);
      return { copy: def.name, job: def.job, target: target.root, copied, cleanedUp, retention };
    } finally {
      if (pool !== opts.pool) await pool.close();
      // Released above on success; releasing twice is harmless.
      await sourceLock.release().catch(() => undefined);
    }
  } finally {
    await targetLock.release();
  }
}

/** The source's points newer than the newest one the target holds a copy of, oldest first. */
function pointsToCopy(target: JobState, source: JobState): PointInfo[] {
  let newestCopied = -1;
  for (const c of target.chains) for (const f of chainFiles(c)) newestCopied = Math.max(newestCopied, copyOfFile(f.root.meta)?.seq ?? -1);
  return source.points.filter((p) => p.seq > newestCopied).sort((a, b) => a.seq - b.seq);
}

const DAY_MS = 86_400_000;

/**
 * Whether the copy of `point` starts a new chain on the target: the first
 * copy, a change of disk count, GFS wanting a full in the point's period, or
 * a latest chain as long as the retention keeps (by points: that many
 * points; by days: a full that many days older), so the forward rule of
 * retention can delete whole older chains.
 */
function fullReason(def: CopyJobDefinition, state: JobState, point: PointInfo): string | undefined {
  const latest = state.chains[state.chains.length - 1];
  if (latest === undefined) return 'first copy';
  if (latest.full.header.diskSizes.length !== point.diskSizes.length) return 'disk list changed';
  const gfs = def.gfs && gfsFullDue(planChains(state), def.gfs, point.createdAt);
  if (gfs) return gfs;
  const length = chainFiles(latest).length;
  if (def.retainDays === undefined && length >= def.retainPoints) return `the latest chain holds ${length} points (retention keeps ${def.retainPoints})`;
  if (def.retainDays !== undefined && Date.parse(point.createdAt) - latest.full.root.createdAtMs >= def.retainDays * DAY_MS)
    return `the latest chain's full is ${def.retainDays} days old or more`;
  return undefined;
}

interface PointCopy {
  readonly def: CopyJobDefinition;
  readonly source: Repository;
  readonly sourceJob: JobDefinition;
  readonly targetJob: JobDefinition;
  readonly sourceState: JobState;
  readonly state: JobState;
  readonly point: PointInfo;
  readonly pool: BlockWorkerPool;
  readonly progress: ((p: { disk: number; blocksDone: number; blocksTotal: number }) => void) | undefined;
  readonly signal: AbortSignal | undefined;
}

/** Writes one copied point on the target: a full, or an increment on the target's newest point. */
async function copyPoint(c: PointCopy): Promise<CopiedPoint> {
  const { state, point } = c;
  const files = filesForPoint(c.sourceState, point.id)!;
  const top = files[files.length - 1]!;
  const full = fullReason(c.def, state, point);
  const kind: FileKind = full !== undefined ? 'full' : 'increment';
  const latest = state.chains[state.chains.length - 1];
  const parent = kind === 'increment' ? state.points[state.points.length - 1]! : undefined;
  const pointId = newPointId();
  const name = `${fileStamp(new Date(top.root.createdAtMs))}_${pointId}${FILE_EXTENSIONS[kind]}`;
  const diskSizes = top.root.diskSizes;
  let writer: BackupFileWriter | undefined = await BackupFileWriter.create(
    join(state.dir, name),
    {
      formatVersion: FORMAT_CURRENT,
      kind,
      blockSize: files[0]!.header.blockSize,
      createdAtMs: top.root.createdAtMs,
      fileId: newUuid(),
      chainId: kind === 'full' ? newUuid() : latest!.chainId,
      jobId: c.targetJob.jobId,
      diskSizes,
    },
    state.storage,
  );
  const totals = { blocksCopied: 0, blocksUnchanged: 0, blocksZero: 0 };
  try {
    for (let d = 0; d < diskSizes.length; d++) await copyDisk(c, files, d, parent, writer, totals);
    const bytesCopied = writer.storedBytes;
    const meta: CopiedMeta = {
      vm: top.root.meta.vm,
      trigger: `copy of point ${point.id} (copy job ${c.def.name}${full !== undefined ? `; full: ${full}` : ''})`,
      copyOf: { repoId: c.source.config.repoId, jobId: c.sourceJob.jobId, pointId: point.id, seq: point.seq },
    };
    await writer.commit({
      kind,
      seq: Math.max(0, ...state.points.map((p) => p.seq), ...state.chains.map((ch) => ch.full.root.seq)) + 1,
      createdAtMs: top.root.createdAtMs,
      pointId,
      parentPointId: parent?.id ?? null,
      mergedCount: 0,
      diskSizes,
      meta,
    });
    writer = undefined;
    return { sourcePointId: point.id, pointId, kind, file: name, createdAt: point.createdAt, ...totals, bytesCopied };
  } finally {
    if (writer) await writer.abort();
  }
}

/** One disk of a copied point: every block the source point stores (full), or those whose digest differs from the parent's (increment). */
async function copyDisk(
  c: PointCopy,
  files: Parameters<typeof RestorePointDisk.open>[0],
  d: number,
  parent: PointInfo | undefined,
  writer: BackupFileWriter,
  totals: { blocksCopied: number; blocksUnchanged: number; blocksZero: number },
): Promise<void> {
  const opened: RestorePointDisk[] = [];
  try {
    const src = await RestorePointDisk.open(files, d, { cacheBytes: 0, storage: c.source.storage });
    opened.push(src);
    const parentFiles = parent && d < parent.diskSizes.length ? filesForPoint(c.state, parent.id) : undefined;
    const prev = parentFiles ? await RestorePointDisk.open(parentFiles, d, { cacheBytes: 0, storage: c.state.storage }) : undefined;
    if (prev) opened.push(prev);
    let done = 0;
    function* steps(): Iterable<CopyStep<{ bi: number }>> {
      for (let bi = 0; bi < src.blockCount; bi++) {
        const digest = src.digestOf(bi);
        const before = prev?.digestOf(bi) ?? null;
        if (digest === null) {
          // A full stores no entry for zeros; an increment records that the block became zero.
          if (before !== null) yield { tag: { bi } };
          else totals.blocksZero += 1;
          continue;
        }
        if (before !== null && before.equals(digest)) {
          totals.blocksUnchanged += 1;
          continue;
        }
        const at = src.storedBlock(bi)!;
        yield { copy: { file: at.file, table: at.file.root.tables[d]!, slot: at.slot, rawLength: src.rawLength(bi) }, tag: { bi } };
      }
    }
    await copyVerified(
      c.pool,
      steps(),
      async ({ bi }, block) => {
        if (block === undefined) {
          writer.addZero(d, bi);
          totals.blocksZero += 1;
        } else {
          await writer.addBlock(d, bi, block.codec, block.stored, block.digest);
          totals.blocksCopied += 1;
        }
        done += 1;
        if (c.progress && done % 64 === 0) c.progress({ disk: d, blocksDone: bi + 1, blocksTotal: src.blockCount });
      },
      c.signal,
    );
    c.progress?.({ disk: d, blocksDone: src.blockCount, blocksTotal: src.blockCount });
  } finally {
    await closeAll(opened.map((o) => o.close()));
  }
}
