import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { LifeboatError, fromFsError, isLifeboatError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import { throwIfInterrupted } from '../core/cancel.js';
import { lockAt, readWholeFile, writeFileAtomic, type Storage } from '../storage/index.js';
import { JOB_FILE, KEY_FILE, REPO_CONFIG, loadJob, scanJob, type Chain, type JobState, type Repository } from '../repository/index.js';
import { readCapacityRecord, readCapacityTier, writeCapacityRecord, type CapacityCopy, type CapacityTierConfig } from '../repository/capacity-tier.js';
import { TieredStorage } from '../repository/tiered-storage.js';
import { gfsFlagsByPoint } from '../retention/plan.js';
import { planChains } from './retention-run.js';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Bytes read from one extent and written to the other at a time. */
const CHUNK = 8 * 1024 * 1024;

export interface TierProgress {
  readonly job: string;
  readonly file: string;
  /** 'copy': written to the capacity extent; 'check': the copy read back. */
  readonly step: 'copy' | 'check';
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

export interface TierFile {
  readonly job: string;
  readonly file: string;
  readonly bytes: number;
}

export interface TierReport {
  /** Backup files copied (or copied again: the local file changed since) to the capacity extent, each read back and checked. */
  readonly copied: readonly TierFile[];
  /** Backup files whose local copy was removed, their verified copy on the capacity extent now the only one. */
  readonly freed: readonly TierFile[];
  readonly bytesCopied: number;
  readonly bytesFreed: number;
  /** Packs of the object store that no file named any more, removed at the end of the run. */
  readonly packsRemoved: number;
}

export interface TierOptions {
  readonly clock: Clock;
  /** Only this job (default: every job of the repository). */
  readonly job?: string | undefined;
  /** Wait this long for a backup of a job to end (its lock) instead of failing at once. */
  readonly waitMs?: number;
  readonly signal?: AbortSignal | undefined;
  readonly onProgress?: (p: TierProgress) => void;
  /** Called when a copy made by an earlier run no longer reads back as recorded (it is made again). */
  readonly onMismatch?: (job: string, file: string) => void;
  /** Called as each job is done. */
  readonly onJob?: (job: string, copied: readonly TierFile[], freed: readonly TierFile[]) => void;
}

/** The repository's tiered storage and setting, or LFB_ERR_NO_CAPACITY_TIER. */
export async function capacityTierOf(repo: Repository): Promise<{ storage: TieredStorage; tier: CapacityTierConfig }> {
  const tier = await readCapacityTier(repo.root);
  if (tier === undefined || !(repo.storage instanceof TieredStorage))
    throw new LifeboatError(
      'LFB_ERR_NO_CAPACITY_TIER',
      `${repo.root} has no capacity tier; give it one with \`lifeboat tier set --repo ${repo.root} --capacity s3://…\``,
      {
        details: { repo: repo.root },
      },
    );
  return { storage: repo.storage, tier };
}

const chainFiles = (c: Chain) => [c.full, ...c.increments, ...c.rollbacks];

/**
 * The chains of a job that leave the performance extent: every chain but the
 * one holding the newest point (a backup may still add to that one), when its
 * newest point is `moveAfterDays` old, or when it is a sealed GFS full (a
 * flagged full whose increments are gone: nothing will ever change it).
 */
export function chainsToMove(state: JobState, tier: CapacityTierConfig, gfs: Parameters<typeof gfsFlagsByPoint>[1] | undefined, now: Date): Chain[] {
  if (tier.moveAfterDays === undefined || state.points.length === 0) return [];
  const newest = state.points.reduce((a, b) => (b.seq > a.seq ? b : a));
  const flagged = gfs === undefined ? new Map<string, unknown>() : gfsFlagsByPoint(planChains(state), gfs, now.toISOString());
  return state.chains.filter((c) => {
    if (c.chainId === newest.chainId) return false;
    const youngest = Math.max(...chainFiles(c).map((f) => f.root.createdAtMs));
    const sealedGfs = flagged.has(c.full.root.pointId) && c.increments.length === 0 && c.rollbacks.length === 0;
    return now.getTime() - youngest >= tier.moveAfterDays! * DAY_MS || sealedGfs;
  });
}

/** SHA-256 of a whole file of a storage, read in chunks. */
async function hashOf(storage: Storage, path: string, size: number, progress: (done: number) => void, signal: AbortSignal | undefined): Promise<string> {
  const f = await storage.open(path, 'read');
  try {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(CHUNK);
    let at = 0;
    while (at < size) {
      throwIfInterrupted(signal);
      const n = await f.pread(buf.subarray(0, Math.min(CHUNK, size - at)), at);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      at += n;
      progress(at);
    }
    if (at !== size || (await f.size()) !== size)
      throw new LifeboatError('LFB_ERR_TIER_MISMATCH', `${path} holds ${await f.size()} bytes where ${size} were copied`, { details: { path, size } });
    return hash.digest('hex');
  } finally {
    await f.close();
  }
}

/**
 * Copies a local file to the capacity extent and returns the SHA-256 of what
 * it read. The copy is written under a temporary name and renamed once synced,
 * so the name holds a whole file or none (on object storage a rename writes
 * the file's root under the new name: no data is copied twice).
 */
async function copyOut(
  local: Storage,
  capacity: Storage,
  from: string,
  to: string,
  size: number,
  progress: (done: number) => void,
  signal: AbortSignal | undefined,
): Promise<string> {
  const src = await local.open(from, 'read');
  const partial = join(dirname(to), `.${basename(to)}.tier.tmp`);
  const hash = createHash('sha256');
  let renamed = false;
  try {
    const dst = await capacity.open(partial, 'replace');
    try {
      const buf = Buffer.allocUnsafe(CHUNK);
      let at = 0;
      while (at < size) {
        throwIfInterrupted(signal);
        const n = await src.pread(buf.subarray(0, Math.min(CHUNK, size - at)), at);
        if (n === 0) throw new LifeboatError('LFB_ERR_TIER_MISMATCH', `${from} ended at ${at} bytes while ${size} were expected`, { details: { path: from } });
        hash.update(buf.subarray(0, n));
        await dst.pwrite(buf.subarray(0, n), at);
        at += n;
        progress(at);
      }
      await dst.sync();
    } finally {
      await dst.close();
    }
    await capacity.rename(partial, to);
    renamed = true;
    await capacity.syncDir(dirname(to));
    return hash.digest('hex');
  } finally {
    await src.close();
    if (!renamed) await capacity.remove(partial).catch(() => undefined);
  }
}

/** Writes a small local file's bytes to the capacity extent when its copy there differs (lifeboat.json, a key file, job.json). */
async function mirrorSmallFile(local: Storage, capacity: Storage, from: string, to: string): Promise<void> {
  const here = await readWholeFile(from, local);
  const there = await readWholeFile(to, capacity).catch((err: unknown) => {
    if (isLifeboatError(err, 'LFB_ERR_IO') && err.details['errno'] === 'ENOENT') return undefined;
    throw err;
  });
  if (there === undefined || !here.equals(there)) await writeFileAtomic(to, here, capacity);
}

/**
 * The capacity tier's run: for each job (its lock held), copies to the
 * capacity extent every backup file the setting wants there (all of them in
 * copy mode; the files of the chains chainsToMove names otherwise), reads each
 * copy back and checks its SHA-256 against the bytes read here, records it in
 * the job's capacity.json, and only then removes the local file of a chain
 * that moves. A copy made by an earlier run is read back and checked again
 * before its local file goes. Killed at any moment, it leaves every file
 * readable from one extent or both: a copy is committed whole or not at all,
 * recorded only once checked, and a local file is removed only after that.
 * The repository's lifeboat.json (and key file) and each job.json are kept on
 * the capacity extent too, so that it opens as a repository of its own.
 */
export async function runTier(repo: Repository, opts: TierOptions): Promise<TierReport> {
  const { storage, tier } = await capacityTierOf(repo);
  const capacity = await storage.capacity();
  const local = storage.local;
  const farPath = (path: string): string => join(storage.capacityRoot, relative(repo.root, path));
  // A folder as the capacity extent needs its folders; on object storage a folder is only a name's prefix (and a mark object).
  await capacity.mkdir(storage.capacityRoot);
  if (repo.config.encryption !== undefined) await capacity.mkdir(dirname(farPath(join(repo.root, KEY_FILE))));
  await mirrorSmallFile(local, capacity, join(repo.root, REPO_CONFIG), farPath(join(repo.root, REPO_CONFIG)));
  if (repo.config.encryption !== undefined) await mirrorSmallFile(local, capacity, join(repo.root, KEY_FILE), farPath(join(repo.root, KEY_FILE)));
  const jobs = opts.job !== undefined ? [(await loadJob(repo, opts.job)).name] : await repo.listJobs();
  const copied: TierFile[] = [];
  const freed: TierFile[] = [];
  for (const name of jobs) {
    throwIfInterrupted(opts.signal);
    const dir = repo.jobDir(name);
    const lock = await lockAt(storage, join(dir, 'lock'), `job "${name}"`, { waitMs: opts.waitMs ?? 0, signal: opts.signal });
    const jobCopied: TierFile[] = [];
    const jobFreed: TierFile[] = [];
    try {
      const job = await loadJob(repo, name);
      await capacity.mkdir(farPath(dir));
      await mirrorSmallFile(local, capacity, join(dir, JOB_FILE), farPath(join(dir, JOB_FILE)));
      const state = await scanJob(dir, storage);
      const moving = new Set(chainsToMove(state, tier, job.gfs, opts.clock.now()).map((c) => c.chainId));
      const files = { ...(await readCapacityRecord(dir, local)).files };
      for (const chain of state.chains) {
        const move = moving.has(chain.chainId);
        if (!move && !tier.copyNew) continue;
        for (const f of chainFiles(chain)) {
          const st = await stat(f.path).catch((err: unknown) => {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
            throw fromFsError(err, 'stat', f.path);
          });
          // Only on the capacity extent already.
          if (st === undefined) continue;
          const size = st.size;
          const report = (step: TierProgress['step']) => (done: number) =>
            opts.onProgress?.({ job: name, file: f.name, step, bytesDone: done, bytesTotal: size });
          const known: CapacityCopy | undefined = files[f.name];
          let current = known !== undefined && known.size === size && known.mtimeMs === st.mtimeMs;
          if (current && move) {
            // Copied by an earlier run: read back again before the only other copy goes. A copy that no longer
            // matches (damaged or removed on the store) is made anew from the local file, which is still here.
            const back = await hashOf(capacity, farPath(f.path), size, report('check'), opts.signal).catch((err: unknown) => {
              if (isLifeboatError(err, 'LFB_ERR_TIER_MISMATCH') || (isLifeboatError(err, 'LFB_ERR_IO') && err.details['errno'] === 'ENOENT')) return undefined;
              throw err;
            });
            current = back === known!.sha256;
            if (!current) opts.onMismatch?.(name, f.name);
          }
          if (!current) {
            const sent = await copyOut(local, capacity, f.path, farPath(f.path), size, report('copy'), opts.signal);
            const back = await hashOf(capacity, farPath(f.path), size, report('check'), opts.signal);
            if (back !== sent)
              throw new LifeboatError(
                'LFB_ERR_TIER_MISMATCH',
                `the copy of ${f.path} on the capacity tier reads back differently (SHA-256 ${back}, sent ${sent}); the local file stays`,
                { details: { path: f.path, capacity: farPath(f.path) } },
              );
            files[f.name] = { size, mtimeMs: st.mtimeMs, sha256: sent, copiedAt: opts.clock.now().toISOString() };
            await writeCapacityRecord(dir, { files }, local);
            jobCopied.push({ job: name, file: f.name, bytes: size });
          }
          if (!move) continue;
          throwIfInterrupted(opts.signal);
          await local.remove(f.path);
          await local.syncDir(dir);
          jobFreed.push({ job: name, file: f.name, bytes: size });
        }
      }
    } finally {
      await lock.release();
    }
    copied.push(...jobCopied);
    freed.push(...jobFreed);
    opts.onJob?.(name, jobCopied, jobFreed);
  }
  // What a killed copy or a removed file left on an object store, once older than its grace.
  const collected = await storage.collectCapacity();
  return {
    copied,
    freed,
    packsRemoved: collected?.packsRemoved ?? 0,
    bytesCopied: copied.reduce((a, f) => a + f.bytes, 0),
    bytesFreed: freed.reduce((a, f) => a + f.bytes, 0),
  };
}

export type FilePlace = 'local' | 'capacity' | 'both';

export interface TierFileState {
  readonly file: string;
  readonly bytes: number;
  readonly place: FilePlace;
  /** The capacity copy was made of an older state of the local file (a merge or compact since): the next run copies it again. */
  readonly stale: boolean;
  readonly points: readonly string[];
}

export interface TierJobState {
  readonly job: string;
  readonly files: readonly TierFileState[];
}

/** Where each backup file of each job is (the local folder and the jobs' capacity records say), with the points each holds (read from the files, wherever they are). */
export async function tierStatus(repo: Repository): Promise<{ tier: CapacityTierConfig; jobs: TierJobState[] }> {
  const { storage, tier } = await capacityTierOf(repo);
  const jobs: TierJobState[] = [];
  for (const name of await repo.listJobs()) {
    const dir = repo.jobDir(name);
    const record = (await readCapacityRecord(dir, storage.local)).files;
    const here = new Set(await storage.local.list(dir));
    const names = (await storage.list(dir)).filter((n) => /^[^.].*\.(vbk|vib|vrb)$/.test(n));
    const points = new Map<string, string[]>();
    for (const p of (await scanJob(dir, storage)).points) points.set(p.file, [...(points.get(p.file) ?? []), p.id]);
    const files: TierFileState[] = [];
    for (const file of names) {
      const st = here.has(file) ? await stat(join(dir, file)).catch(() => undefined) : undefined;
      const copy = record[file];
      const place: FilePlace = st === undefined ? 'capacity' : copy === undefined ? 'local' : 'both';
      files.push({
        file,
        bytes: st?.size ?? copy?.size ?? 0,
        place,
        stale: st !== undefined && copy !== undefined && (copy.size !== st.size || copy.mtimeMs !== st.mtimeMs),
        points: points.get(file) ?? [],
      });
    }
    jobs.push({ job: name, files });
  }
  return { tier, jobs };
}
