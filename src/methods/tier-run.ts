import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { LifeboatError, fromFsError, isLifeboatError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import { throwIfInterrupted } from '../core/cancel.js';
import { lockAt, readWholeFile, removeDurable, renameDurable, writeFileAtomic, type Storage } from '../storage/index.js';
import { DATA_START } from '../format/constants.js';
import { BackupFileReader, JOB_FILE, KEY_FILE, REPO_CONFIG, loadJob, scanJob, type Chain, type JobState, type Repository } from '../repository/index.js';
import { copyIsCurrent, readCapacityRecord, writeCapacityRecord, type CapacityCopy, type CapacityTierConfig } from '../repository/capacity-tier.js';
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
  readonly onMismatch?: (job: string, file: string) => void | Promise<void>;
  /** Called as each job is done. */
  readonly onJob?: (job: string, copied: readonly TierFile[], freed: readonly TierFile[]) => void | Promise<void>;
}

/** Held by a tier run, and by `tier set` and `tier clear`: one at a time per repository. */
export const TIER_LOCK = 'capacity-tier.lock';

/** The repository's storage seam over its folder and capacity extent (every repository in a folder has one). */
export function tieredStorageOf(repo: Repository): TieredStorage {
  if (!(repo.storage instanceof TieredStorage))
    throw new LifeboatError('LFB_ERR_NO_CAPACITY_TIER', `${repo.root} is on object storage; a capacity tier extends a repository in a folder`, {
      details: { repo: repo.root },
    });
  return repo.storage;
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

/** Writes a local file's bytes to `to` on the capacity extent and returns the SHA-256 of what it read (the copy is synced, not yet checked). */
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
  const hash = createHash('sha256');
  try {
    const dst = await capacity.open(to, 'replace');
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
    return hash.digest('hex');
  } finally {
    await src.close();
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

/** What a file was when its copy was made: a rewrite since changes one of these (ctime whatever the mtime). */
type Seen = Pick<Stats, 'size' | 'mtimeMs' | 'ctimeMs' | 'ino'>;

async function statLocal(path: string): Promise<Seen | undefined> {
  return stat(path).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromFsError(err, 'stat', path);
  });
}

const sameFile = (a: Seen, b: Seen): boolean => a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.ino === b.ino;

/** Whether the record's copy is of the file as it is now. */
export const recordedAsIs = (c: CapacityCopy | undefined, st: Seen): boolean => copyIsCurrent(c, st);

/** A file the first phase made ready: its copy under a temporary name (or an earlier copy checked again), to be committed under the job's lock. */
interface Staged {
  readonly name: string;
  readonly path: string;
  readonly seen: Seen;
  readonly move: boolean;
  /** The new copy's temporary name on the extent and its SHA-256; undefined when the recorded copy stands. */
  readonly partial?: { readonly path: string; readonly sha256: string } | undefined;
}

/** Removes what a job's run left on the extent under temporary names (best effort: a failure here is not the run's). */
async function removeAll(capacity: Storage, paths: ReadonlySet<string>): Promise<void> {
  for (const p of paths) await capacity.remove(p).catch(() => undefined);
}

/** The local stub of a moved file: its header and commit slots, and its root, at their offsets (the rest a hole). */
async function writeStub(local: Storage, path: string): Promise<[number, number][]> {
  const r = await BackupFileReader.open(path, { storage: local });
  let ranges: [number, number][];
  const head = Buffer.alloc(DATA_START);
  const root = Buffer.alloc(r.slot.rootLength);
  try {
    ranges = [
      [0, DATA_START],
      [r.slot.rootOffset, r.slot.rootLength],
    ];
    await r.handle.read(head, 0);
    await r.handle.read(root, r.slot.rootOffset);
  } finally {
    await r.close();
  }
  const stub = TieredStorage.stubPath(path);
  await local.mkdir(dirname(stub));
  const partial = `${stub}.tmp`;
  const f = await local.open(partial, 'replace');
  try {
    await f.pwrite(head, 0);
    await f.pwrite(root, ranges[1]![0]);
    await f.sync();
  } finally {
    await f.close();
  }
  await renameDurable(partial, stub, local);
  return ranges;
}

/**
 * The capacity tier's run, one at a time per repository (its lock). For each
 * job, in two phases:
 * 1. without the job's lock (its backups go on): every backup file the
 *    setting wants on the extent (all of them in copy mode; the files of the
 *    chains chainsToMove names otherwise) whose copy is missing or of an older
 *    state is written under a temporary name, read back and its SHA-256
 *    compared with the bytes read here; a copy made by an earlier run of a
 *    file that now moves is read back and checked again (and made anew if it
 *    no longer matches);
 * 2. under the job's lock: each file unchanged since (size, times, inode) has
 *    its copy renamed to its name and recorded in capacity.json; a file that
 *    moves then gets its local stub and its local file is removed.
 * Killed at any moment, it leaves every point readable from one extent or
 * both: a copy is recorded only once checked and named, and a local file is
 * removed only after its record and stub. The repository's lifeboat.json (and
 * key file) and each job.json are kept on the extent too, so that it opens as
 * a repository of its own.
 */
export async function runTier(repo: Repository, opts: TierOptions): Promise<TierReport> {
  const storage = tieredStorageOf(repo);
  const extent = await storage.requireExtent();
  const tierLock = await lockAt(storage, join(repo.root, TIER_LOCK), 'the capacity tier', { waitMs: opts.waitMs ?? 0, signal: opts.signal });
  try {
    const { storage: capacity, tier } = extent;
    const local = storage.local;
    const farPath = (path: string): string => join(extent.root, relative(repo.root, path));
    // A folder as the capacity extent needs its folders; on object storage a folder is only a name's prefix (and a mark object).
    await capacity.mkdir(extent.root);
    if (repo.config.encryption !== undefined) await capacity.mkdir(dirname(farPath(join(repo.root, KEY_FILE))));
    await mirrorSmallFile(local, capacity, join(repo.root, REPO_CONFIG), farPath(join(repo.root, REPO_CONFIG)));
    if (repo.config.encryption !== undefined) await mirrorSmallFile(local, capacity, join(repo.root, KEY_FILE), farPath(join(repo.root, KEY_FILE)));
    const jobs = opts.job !== undefined ? [(await loadJob(repo, opts.job)).name] : await repo.listJobs();
    const copied: TierFile[] = [];
    const freed: TierFile[] = [];
    for (const name of jobs) {
      throwIfInterrupted(opts.signal);
      const dir = repo.jobDir(name);
      const job = await loadJob(repo, name);
      await capacity.mkdir(farPath(dir));
      await mirrorSmallFile(local, capacity, join(dir, JOB_FILE), farPath(join(dir, JOB_FILE)));
      const state = await scanJob(dir, storage);
      const moving = new Set(chainsToMove(state, tier, job.gfs, opts.clock.now()).map((c) => c.chainId));
      const recorded = (await readCapacityRecord(dir, local)).files;
      const staged: Staged[] = [];
      // Temporary copies not renamed by the end of the job (a failure, a stop, a file changed meanwhile) are removed.
      const leftOver = new Set<string>();
      try {
        for (const chain of state.chains) {
          const move = moving.has(chain.chainId);
          if (!move && !tier.copyNew) continue;
          for (const f of chainFiles(chain)) {
            const seen = await statLocal(f.path);
            if (seen === undefined) continue; // moved already
            const report = (step: TierProgress['step']) => (done: number) =>
              opts.onProgress?.({ job: name, file: f.name, step, bytesDone: done, bytesTotal: seen.size });
            let current = recordedAsIs(recorded[f.name], seen);
            if (current && move) {
              // Copied by an earlier run: read back again before the only other copy goes. A copy that no longer
              // matches (damaged or removed on the store) is made anew from the local file, which is still here.
              const back = await hashOf(capacity, farPath(f.path), seen.size, report('check'), opts.signal).catch((err: unknown) => {
                if (isLifeboatError(err, 'LFB_ERR_TIER_MISMATCH') || (isLifeboatError(err, 'LFB_ERR_IO') && err.details['errno'] === 'ENOENT'))
                  return undefined;
                throw err;
              });
              current = back === recorded[f.name]!.sha256;
              if (!current) await opts.onMismatch?.(name, f.name);
            }
            if (current) {
              if (move) staged.push({ name: f.name, path: f.path, seen, move });
              continue;
            }
            const partial = farPath(join(dir, `.${f.name}.tier.tmp`));
            leftOver.add(partial);
            const sent = await copyOut(local, capacity, f.path, partial, seen.size, report('copy'), opts.signal);
            const back = await hashOf(capacity, partial, seen.size, report('check'), opts.signal);
            if (back !== sent)
              throw new LifeboatError(
                'LFB_ERR_TIER_MISMATCH',
                `the copy of ${f.path} on the capacity tier reads back differently (SHA-256 ${back}, sent ${sent}); the local file stays`,
                { details: { path: f.path, capacity: partial } },
              );
            staged.push({ name: f.name, path: f.path, seen, move, partial: { path: partial, sha256: sent } });
          }
        }
      } catch (err) {
        await removeAll(capacity, leftOver);
        throw err;
      }
      const jobCopied: TierFile[] = [];
      const jobFreed: TierFile[] = [];
      if (staged.length > 0) {
        const lock = await lockAt(storage, join(dir, 'lock'), `job "${name}"`, { waitMs: opts.waitMs ?? 0, signal: opts.signal }).catch(
          async (err: unknown) => {
            await removeAll(capacity, leftOver);
            throw err;
          },
        );
        try {
          const now = await storage.extent();
          if (now?.root !== extent.root)
            throw new LifeboatError('LFB_ERR_ON_CAPACITY_TIER', `the capacity tier of ${repo.root} changed while its run was going; nothing more was moved`, {
              details: { repo: repo.root },
            });
          const files = { ...(await readCapacityRecord(dir, local)).files };
          for (const s of staged) {
            const seen = await statLocal(s.path);
            // Removed or rewritten meanwhile (retention, a merge), or its record dropped (a removal cut short): the next run looks again.
            if (seen === undefined || !sameFile(seen, s.seen)) continue;
            if (s.partial === undefined && !recordedAsIs(files[s.name], seen)) continue;
            if (s.partial !== undefined) {
              await renameDurable(s.partial.path, farPath(s.path), capacity);
              leftOver.delete(s.partial.path);
              files[s.name] = {
                size: seen.size,
                mtimeMs: seen.mtimeMs,
                ctimeMs: seen.ctimeMs,
                sha256: s.partial.sha256,
                copiedAt: opts.clock.now().toISOString(),
              };
              await writeCapacityRecord(dir, { files }, local);
              jobCopied.push({ job: name, file: s.name, bytes: seen.size });
            }
            if (!s.move) continue;
            throwIfInterrupted(opts.signal);
            files[s.name] = { ...files[s.name]!, stub: await writeStub(local, s.path) };
            await writeCapacityRecord(dir, { files }, local);
            await removeDurable(s.path, local);
            jobFreed.push({ job: name, file: s.name, bytes: seen.size });
          }
        } finally {
          await lock.release();
          await removeAll(capacity, leftOver);
        }
      }
      copied.push(...jobCopied);
      freed.push(...jobFreed);
      await opts.onJob?.(name, jobCopied, jobFreed);
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
  } finally {
    await tierLock.release();
  }
}
