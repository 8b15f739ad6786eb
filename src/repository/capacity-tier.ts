import { join } from 'node:path';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import { localStorage, type Storage } from '../storage/index.js';
import { readCheckedJson, writeCheckedJson } from './checked-json.js';

/**
 * A scale-out repository: the repository's folder is its performance extent,
 * and an S3 location its capacity extent (Veeam's capacity tier). The
 * setting lives in the folder beside lifeboat.json; the record of which
 * backup files have a copy on the capacity extent lives in each job's folder
 * (CapacityRecord). Both are only ever on the local file system: a backup
 * never needs the object store to decide anything.
 */
export const CAPACITY_TIER_FILE = 'capacity-tier.json';
/** In each job folder: the job's backup files that have a verified copy on the capacity extent. */
export const CAPACITY_RECORD_FILE = 'capacity.json';
/** In each job folder: the stubs of its moved backup files (header, commit slots and root at their offsets, the rest a hole). */
export const STUB_FOLDER = '.capacity';
/** When `serve` runs the capacity tier's job unless the setting says otherwise: every 4 hours (Veeam's offload period). */
export const DEFAULT_TIER_SCHEDULE = '0 */4 * * *';

export interface CapacityTierConfig {
  /** The capacity extent's root, as repositoryRoot spells it (s3:/bucket/prefix). */
  readonly location: string;
  /** Chains whose newest point is this many days old (and a newer chain exists) are moved: copied, verified, freed here. Absent: never moved. */
  readonly moveAfterDays?: number | undefined;
  /** Every backup file is copied as soon as it is committed and sealed (copy mode); the local file stays. */
  readonly copyNew: boolean;
  /** When the server runs the tier's job (cron); default DEFAULT_TIER_SCHEDULE. */
  readonly schedule?: string | undefined;
}

/** What the capacity extent holds of one backup file: the local file it is a copy of (size, mtime) and its SHA-256, checked by reading the copy back. */
export interface CapacityCopy {
  readonly size: number;
  readonly mtimeMs: number;
  /** The local file's ctime then: no rewrite, whatever it does to the mtime, keeps it. */
  readonly ctimeMs?: number | undefined;
  readonly sha256: string;
  readonly copiedAt: string;
  /** Once moved: the [offset, length] ranges its local stub holds (header and commit slots, root). */
  readonly stub?: readonly (readonly [number, number])[] | undefined;
}

export interface CapacityRecord {
  readonly files: Readonly<Record<string, CapacityCopy>>;
}

export async function readCapacityTier(root: string, storage: Storage = localStorage): Promise<CapacityTierConfig | undefined> {
  try {
    return await readCheckedJson<CapacityTierConfig>(join(root, CAPACITY_TIER_FILE), 'LFB_ERR_REPO_CORRUPT', storage);
  } catch (err) {
    // No setting, or no folder at all (a repository not made yet, or a path that is a file): a plain repository.
    if (isLifeboatError(err, 'LFB_ERR_IO') && (err.details['errno'] === 'ENOENT' || err.details['errno'] === 'ENOTDIR')) return undefined;
    throw err;
  }
}

export async function writeCapacityTier(root: string, config: CapacityTierConfig | undefined, storage: Storage = localStorage): Promise<void> {
  const path = join(root, CAPACITY_TIER_FILE);
  if (config === undefined) await storage.remove(path);
  else await writeCheckedJson(path, config, storage);
  await storage.syncDir(root);
}

/** Whether a recorded copy is of the local file as it is now (size, mtime, and ctime when recorded): a merge or compact since makes it out of date. */
export function copyIsCurrent(copy: CapacityCopy | undefined, local: { readonly size: number; readonly mtimeMs: number; readonly ctimeMs: number }): boolean {
  return copy !== undefined && copy.size === local.size && copy.mtimeMs === local.mtimeMs && (copy.ctimeMs === undefined || copy.ctimeMs === local.ctimeMs);
}

/**
 * What each named job's recorded copies take on the capacity extent (moved files and copies of files still
 * local alike); undefined when the repository in the folder `root` has no capacity tier. A job whose record
 * cannot be read has no figure (undefined), so one damaged record does not hide the others.
 */
export async function capacityUsage(
  root: string,
  jobs: readonly string[],
  storage: Storage = localStorage,
): Promise<Map<string, number | undefined> | undefined> {
  if ((await readCapacityTier(root, storage)) === undefined) return undefined;
  const out = new Map<string, number | undefined>();
  for (const job of jobs) {
    const record = await readCapacityRecord(join(root, 'jobs', job), storage).catch(() => undefined);
    out.set(job, record && Object.values(record.files).reduce((a, c) => a + c.size, 0));
  }
  return out;
}

/** The job folder's record of copies on the capacity extent; empty when it has none. */
export async function readCapacityRecord(jobDir: string, storage: Storage = localStorage): Promise<CapacityRecord> {
  try {
    return await readCheckedJson<CapacityRecord>(join(jobDir, CAPACITY_RECORD_FILE), 'LFB_ERR_REPO_CORRUPT', storage);
  } catch (err) {
    if (isLifeboatError(err, 'LFB_ERR_IO') && err.details['errno'] === 'ENOENT') return { files: {} };
    throw err;
  }
}

export async function writeCapacityRecord(jobDir: string, record: CapacityRecord, storage: Storage = localStorage): Promise<void> {
  await writeCheckedJson(join(jobDir, CAPACITY_RECORD_FILE), record, storage);
}

export function checkTierDays(days: number | undefined): void {
  if (days !== undefined && (!Number.isInteger(days) || days < 0))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--move-after-days must be a whole number of days (0 or more), not ${String(days)}`);
}
