import { join } from 'node:path';
import { DATA_START } from '../format/index.js';
import { lockAt, type LockFile } from '../storage/index.js';
import { isObjectLocation } from '../repository/location.js';
import { isLifeboatError } from '../core/errors.js';
import { BackupFileReader } from '../repository/backup-file.js';
import { BackupFileWriter } from '../repository/backup-file-writer.js';
import { loadJob } from '../repository/job.js';
import { cleanupJob, scanJob, writeVbm } from '../repository/job-state.js';
import type { Repository } from '../repository/repository.js';
import { refuseOnImmutable } from '../repository/immutability.js';
import type { Clock } from '../core/clock.js';
import { BlockWorkerPool } from '../compress/block-pool.js';
import { copyVerified, type CopyStep } from './verified-copy.js';

export interface CompactedFile {
  readonly file: string;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
}

export interface CompactResult {
  readonly files: readonly CompactedFile[];
  readonly bytesReclaimed: number;
}

/**
 * `lifeboat compact`: rewrites every backup file whose committed root
 * references less than the data it holds (space left by merges and
 * reverse-incremental runs) into a new file with only the referenced blocks,
 * verified (in the worker pool) and copied as stored, and the same point, chain and root. The new
 * file is written under a temporary name, synced, then renamed over the old
 * one: a crash leaves either file whole. Readers that have the old file open
 * (instant recovery) keep reading it until they close it.
 */
/**
 * After a compact on object storage: the packs no file names any more go,
 * with every job's lock held, so that no backup of this host is between
 * writing a pack and committing the root that names it. A writer on another
 * host is protected by `graceMs` alone (packs younger than it stay).
 * Undefined on a folder, or when a job is busy (nothing is removed then).
 */
export async function collectUnusedObjects(repo: Repository, graceMs?: number): Promise<Awaited<ReturnType<Repository['collectObjects']>> | 'busy'> {
  if (!isObjectLocation(repo.root)) return undefined;
  const locks: LockFile[] = [];
  try {
    for (const name of await repo.listJobs()) {
      const lock = await lockAt(repo.storage, join(repo.jobDir(name), 'lock'), `job "${name}"`).catch((err: unknown) => {
        if (isLifeboatError(err, 'LFB_ERR_JOB_LOCKED')) return undefined;
        throw err;
      });
      if (lock === undefined) return 'busy';
      locks.push(lock);
    }
    return await repo.collectObjects(graceMs);
  } finally {
    for (const l of locks) await l.release();
  }
}

export async function compactJob(repo: Repository, jobName: string, clock: Clock, opts: { waitMs?: number } = {}): Promise<CompactResult> {
  const job = await loadJob(repo, jobName);
  refuseOnImmutable(repo, 'compact', 'compact rewrites committed backup files (forward chains leave no dead space to drop)');
  const dir = repo.jobDir(job.name);
  const lock = await lockAt(repo.storage, join(dir, 'lock'), `job "${job.name}"`, { waitMs: opts.waitMs ?? 0 });
  const storage = repo.storage;
  // Blocks are checked in workers (decompress + SHA-256) while the main thread reads and writes.
  const pool = new BlockWorkerPool();
  try {
    let state = await scanJob(dir, storage);
    if ((await cleanupJob(state)).length > 0) state = await scanJob(dir, storage);
    const files: CompactedFile[] = [];
    for (const f of state.chains.flatMap((c) => [c.full, ...c.increments, ...c.rollbacks])) {
      const r = await BackupFileReader.open(f.path, { storage });
      let writer: BackupFileWriter | undefined;
      try {
        const referenced = new Map<number, number>();
        for (const t of r.root.tables) for (let i = 0; i < t.count; i++) if (!t.isZero(i)) referenced.set(t.offset(i), t.storedLength(i));
        const live = [...referenced.values()].reduce((a, b) => a + b, 0);
        const dead = r.slot.fileEnd - DATA_START - r.slot.rootLength - live;
        if (dead <= 0) continue;
        const before = await r.handle.size();
        writer = await BackupFileWriter.create(f.path, r.header, storage);
        const w = writer;
        for (let d = 0; d < r.root.tables.length; d++) {
          const t = r.root.tables[d]!;
          const size = r.root.diskSizes[d]!;
          const steps = function* (): Iterable<CopyStep<number>> {
            for (let i = 0; i < t.count; i++) {
              const bi = t.blockIndex(i);
              if (t.isZero(i)) yield { tag: bi };
              else yield { copy: { file: r, table: t, slot: i, rawLength: Math.min(r.header.blockSize, size - bi * r.header.blockSize) }, tag: bi };
            }
          };
          await copyVerified(pool, steps(), async (bi, block) => {
            if (block === undefined) w.addZero(d, bi);
            else await w.addBlock(d, bi, block.codec, block.stored, block.digest);
          });
        }
        const root = r.root;
        const { fileEnd } = await writer.commit({
          kind: root.kind,
          seq: root.seq,
          createdAtMs: root.createdAtMs,
          pointId: root.pointId,
          parentPointId: root.parentPointId,
          mergedCount: root.mergedCount,
          diskSizes: root.diskSizes,
          meta: root.meta,
        });
        writer = undefined;
        files.push({ file: f.name, bytesBefore: before, bytesAfter: fileEnd });
      } finally {
        if (writer) await writer.abort();
        await r.close();
      }
    }
    await writeVbm(job, await scanJob(dir, storage), clock.now());
    return { files, bytesReclaimed: files.reduce((a, f) => a + f.bytesBefore - f.bytesAfter, 0) };
  } finally {
    await pool.close();
    await lock.release();
  }
}
