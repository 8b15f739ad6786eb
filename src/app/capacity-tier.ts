import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import { parseCron } from '../core/schedule-text.js';
import {
  REPO_CONFIG,
  Repository,
  isObjectLocation,
  locationText,
  openLocation,
  readCheckedJson,
  repositoryRoot,
  type RepositoryConfig,
} from '../repository/index.js';
import {
  CAPACITY_RECORD_FILE,
  DEFAULT_TIER_SCHEDULE,
  STUB_FOLDER,
  checkTierDays,
  readCapacityRecord,
  readCapacityTier,
  writeCapacityTier,
  type CapacityTierConfig,
} from '../repository/capacity-tier.js';
import { localStorage, lockAt } from '../storage/index.js';
import { TIER_LOCK, runTier, type TierOptions, type TierReport } from '../methods/tier-run.js';
import { tierStatus, type TierJobState } from '../methods/tier-status.js';

export type { CapacityTierConfig, TierJobState, TierReport };
export { DEFAULT_TIER_SCHEDULE };

export interface CapacityTierSettings {
  /** s3://bucket/prefix (or a folder, e.g. a NAS mount). */
  readonly capacity: string;
  readonly moveAfterDays?: number | undefined;
  readonly copyNew?: boolean | undefined;
  readonly schedule?: string | undefined;
}

/** The jobs' backup files that live only on the capacity extent (their local copy was freed). */
async function onlyOnCapacity(repo: Repository): Promise<string[]> {
  const out: string[] = [];
  for (const job of await repo.listJobs()) {
    const dir = repo.jobDir(job);
    const here = new Set(await localStorage.list(dir));
    for (const name of Object.keys((await readCapacityRecord(dir)).files)) if (!here.has(name)) out.push(join(job, name));
  }
  return out;
}

/**
 * Gives a repository in a folder a capacity tier, or changes its setting. The
 * capacity extent must be empty or already this repository's (its
 * lifeboat.json names the same repository id): two repositories never share
 * one. Its location cannot change while files live only there.
 */
export async function setCapacityTier(repoDir: string, settings: CapacityTierSettings): Promise<CapacityTierConfig> {
  if (isObjectLocation(repoDir))
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `${locationText(repositoryRoot(repoDir))} is on object storage already; a capacity tier extends a repository in a folder`,
    );
  checkTierDays(settings.moveAfterDays);
  if (settings.schedule !== undefined) parseCron(settings.schedule);
  const repo = await Repository.open(repoDir);
  if (repo.config.immutableDays !== undefined && settings.moveAfterDays !== undefined)
    throw new LifeboatError(
      'LFB_ERR_IMMUTABLE',
      `${repo.root} is immutable (--immutable-days ${repo.config.immutableDays}): its backup files cannot be removed to move them; use --copy-new alone to keep copies on the capacity tier`,
      { details: { repo: repo.root } },
    );
  const location = repositoryRoot(settings.capacity);
  if (location === repo.root || location.startsWith(`${repo.root}/`))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--capacity ${settings.capacity} is inside the repository; give it a place of its own`);
  const previous = await readCapacityTier(repo.root);
  // The extent opens now (its bucket made if missing): a wrong endpoint or key is this command's error, not a later run's.
  const { storage: far } = await openLocation(locationText(location));
  const names = await far.list(location);
  if (names.includes(REPO_CONFIG)) {
    const there = await readCheckedJson<RepositoryConfig>(join(location, REPO_CONFIG), 'LFB_ERR_REPO_CORRUPT', far);
    if (there.repoId !== repo.config.repoId)
      throw new LifeboatError(
        'LFB_ERR_REPO_EXISTS',
        `${locationText(location)} holds another repository (${there.repoId}); a capacity tier needs an empty place or its own`,
        {
          details: { capacity: location },
        },
      );
  } else if (names.length > 0) {
    throw new LifeboatError('LFB_ERR_REPO_EXISTS', `${locationText(location)} is not empty; a capacity tier needs an empty place`, {
      details: { capacity: location },
    });
  }
  const config: CapacityTierConfig = {
    location,
    copyNew: settings.copyNew ?? previous?.copyNew ?? false,
    ...(settings.moveAfterDays !== undefined
      ? { moveAfterDays: settings.moveAfterDays }
      : previous?.moveAfterDays !== undefined
        ? { moveAfterDays: previous.moveAfterDays }
        : {}),
    ...(settings.schedule !== undefined ? { schedule: settings.schedule } : previous?.schedule !== undefined ? { schedule: previous.schedule } : {}),
  };
  if (config.moveAfterDays === undefined && !config.copyNew)
    throw new LifeboatError(
      'LFB_ERR_USAGE',
      'a capacity tier moves old chains (--move-after-days N), copies new backup files (--copy-new), or both: give at least one',
    );
  await whileNoTierRun(repo, async () => {
    // Read again under the lock: a tier run that ended meanwhile may have moved files to the previous extent.
    const now = await readCapacityTier(repo.root);
    if (now !== undefined && now.location !== location) {
      const stranded = await onlyOnCapacity(repo);
      if (stranded.length > 0)
        throw new LifeboatError(
          'LFB_ERR_ON_CAPACITY_TIER',
          `${stranded.length} backup file(s) live only on the capacity tier ${locationText(now.location)} (e.g. ${stranded[0]}); it cannot be replaced by another`,
          { details: { files: stranded.slice(0, 20) } },
        );
      // Another extent holds none of the copies the records name: they are forgotten.
      await forgetCopies(repo);
    }
    await writeCapacityTier(repo.root, config);
  });
  return config;
}

/** Drops the capacity tier's setting (and the jobs' records of copies); refused while backup files live only there. The copies on the object store stay. */
export async function clearCapacityTier(repoDir: string): Promise<void> {
  const repo = await Repository.open(repoDir);
  if ((await readCapacityTier(repo.root)) === undefined)
    throw new LifeboatError('LFB_ERR_NO_CAPACITY_TIER', `${repo.root} has no capacity tier`, { details: { repo: repo.root } });
  await whileNoTierRun(repo, async () => {
    // Checked under the lock: a tier run that ended meanwhile may have moved files.
    const stranded = await onlyOnCapacity(repo);
    if (stranded.length > 0)
      throw new LifeboatError(
        'LFB_ERR_ON_CAPACITY_TIER',
        `${stranded.length} backup file(s) live only on the capacity tier (e.g. ${stranded[0]}); the tier cannot be dropped`,
        {
          details: { files: stranded.slice(0, 20) },
        },
      );
    await writeCapacityTier(repo.root, undefined);
    await forgetCopies(repo);
  });
}

/** Runs `fn` holding the tier's lock (no tier run is going, and none starts meanwhile); LFB_ERR_JOB_LOCKED while one runs. */
async function whileNoTierRun(repo: Repository, fn: () => Promise<void>): Promise<void> {
  const lock = await lockAt(repo.storage, join(repo.root, TIER_LOCK), 'the capacity tier');
  try {
    await fn();
  } finally {
    await lock.release();
  }
}

/** Drops every job's record of copies and its stubs, each under its job's lock (no file lives only on the extent when this is called). */
async function forgetCopies(repo: Repository): Promise<void> {
  for (const job of await repo.listJobs()) {
    const dir = repo.jobDir(job);
    const lock = await lockAt(repo.storage, join(dir, 'lock'), `job "${job}"`, { waitMs: 60_000 });
    try {
      await localStorage.remove(join(dir, CAPACITY_RECORD_FILE));
      await rm(join(dir, STUB_FOLDER), { recursive: true, force: true });
    } finally {
      await lock.release();
    }
  }
}

/** The repository's capacity tier setting, or LFB_ERR_NO_CAPACITY_TIER. */
export async function requireCapacityTier(repoDir: string): Promise<CapacityTierConfig> {
  const root = repositoryRoot(repoDir);
  const tier = isObjectLocation(root) ? undefined : await readCapacityTier(root);
  if (tier === undefined) throw new LifeboatError('LFB_ERR_NO_CAPACITY_TIER', `${locationText(root)} has no capacity tier`, { details: { repo: root } });
  return tier;
}

export async function capacityTierState(repoDir: string): Promise<{ tier: CapacityTierConfig; jobs: TierJobState[] }> {
  return tierStatus(await Repository.open(repoDir));
}

export async function runCapacityTier(repoDir: string, clock: Clock, opts: Omit<TierOptions, 'clock'> = {}): Promise<TierReport> {
  return runTier(await Repository.open(repoDir), { clock, ...opts });
}
