/**
 * The signature of a job folder: what tells, without opening a file, whether
 * the catalog's copy of a job is still that of its files. It covers every
 * file a job's read depends on (job.json, health.json, the capacity tier's
 * record of the job's copies, the backup files, and the repository's capacity
 * tier setting) by
 * name, size, modification time (nanoseconds) and inode, the folder's own
 * time and inode, and the UTC day, because a point's GFS flags depend on the
 * day a listing is made. Files being written (.name.tmp) and the .vbm summary
 * are left out: they say nothing a read uses, and a backup in progress would
 * change the signature with every block written.
 *
 * Cost per job and request: one stat of the folder and one of each full;
 * the folder is listed and its other files stat'ed again only when its own
 * time changed (SettledFolder below says why that is enough). On object
 * storage: one listing of the folder's roots (objectFolderSignature).
 *
 * A file changed twice within its file system's timestamp granularity keeps
 * its modification time; when its size stays too, the signature would not
 * change. So, as git does for its index, a signature taken while the folder's
 * or a file's modification time is within the file system's step of the
 * taking (racyWithin) is `racy`: a
 * read made with it is recorded as such and never taken for fresh, so the job
 * is read again once the files have been quiet that long.
 */
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fromFsError } from '../core/errors.js';
import { HEALTH_FILE, JOB_FILE, isObjectLocation, objectFolderFiles, openLocation } from '../repository/index.js';
import { CAPACITY_RECORD_FILE, CAPACITY_TIER_FILE } from '../repository/capacity-tier.js';

/**
 * The repository's capacity tier setting as the signature covers it: whether a point says where it is depends on it
 * (`tier set`, `tier clear`). A listing of many jobs takes it once and gives it to each job's signature.
 */
export function tierSetting(root: string): string {
  try {
    const st = statSync(join(root, CAPACITY_TIER_FILE), { bigint: true });
    return `tier ${st.size} ${st.mtimeNs} ${st.ino}`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'no tier';
    throw fromFsError(err, 'stat', join(root, CAPACITY_TIER_FILE));
  }
}

/** Longer than the timestamp step of file systems that keep whole seconds (or two: FAT). */
const COARSE_RACY_NS = 2_000_000_000n;
/** File systems with nanosecond times (ext4, XFS, btrfs) step them by a clock tick: a few milliseconds. */
const FINE_RACY_NS = 50_000_000n;

/**
 * Whether a modification time is too close to `nowNs` to tell a further
 * change. A time with no fraction of a second comes from a file system that
 * keeps whole seconds (or two, FAT) — or, once in a billion, by chance: then
 * the wide window only costs one more read.
 */
function racyWithin(mtimeNs: bigint, nowNs: bigint): boolean {
  return mtimeNs > nowNs - (mtimeNs % 1_000_000_000n === 0n ? COARSE_RACY_NS : FINE_RACY_NS);
}

/** The backup files scanJob reads (src/repository/job-state.ts). */
const BACKUP_FILE_RE = /\.(vbk|vib|vrb)$/;

export interface JobFolderSignature {
  readonly signature: string;
  /** Each backup file's size, by name, as stat gave it. */
  readonly fileBytes: ReadonlyMap<string, number>;
  /** Their sum: what the job's backup files take. */
  readonly backupBytes: number;
  /** A file changed too recently for its modification time to tell a further change: a read with this signature is not to be trusted later. */
  readonly racy: boolean;
}

/** How a read taken with `sig` is recorded: a racy one never equals a signature taken later. */
export function recordedSignature(sig: JobFolderSignature): string {
  return sig.racy ? `racy-${sig.signature}` : sig.signature;
}

const isBackupFile = (name: string): boolean => !name.startsWith('.') && BACKUP_FILE_RE.test(name);

/** The folders under the repository's jobs/ (each a job once it has its job.json), sorted. */
export async function jobFolderNames(root: string): Promise<string[]> {
  const dir = join(root, 'jobs');
  // On object storage a folder is a name prefix: the names listed are the job folders (and what else is there, which has no job.json).
  if (isObjectLocation(root)) return (await openLocation(root)).storage.list(dir);
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromFsError(err, 'listing', dir);
  }
  return entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}

/** Stats of the named files; a file removed since the listing is left out (the signature then differs from any with it). */
function statAll(dir: string, names: readonly string[]): FileStat[] {
  const found: FileStat[] = [];
  for (const name of names) {
    try {
      const s = statSync(join(dir, name), { bigint: true });
      found.push({ name, size: s.size, mtimeNs: s.mtimeNs, ino: s.ino });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromFsError(err, 'stat', join(dir, name));
    }
  }
  return found;
}

type FileStat = { name: string; size: bigint; mtimeNs: bigint; ino: bigint };

/**
 * What a folder held the last time it was listed, while its own modification
 * time and inode stay the same: its names, and the stats of every file but
 * the fulls. Lifeboat writes files under a temporary name and renames them
 * (job.json, health.json, increments, rollbacks): each such change is a
 * change of the folder. Only a full (.vbk) is written in place (a merge, a
 * reverse-incremental run), so only fulls are stat'ed on every request.
 */
interface SettledFolder {
  readonly mtimeNs: bigint;
  readonly ino: bigint;
  readonly names: readonly string[];
  readonly settled: readonly FileStat[];
}
const settledFolders = new Map<string, SettledFolder>();

const isFull = (name: string): boolean => isBackupFile(name) && name.endsWith('.vbk');

/** The job folder's signature at `now` (with the repository's `tier` setting, when the caller has it); undefined when the folder or its job.json is not there. */
export async function jobFolderSignature(root: string, job: string, now: Date, tier?: string): Promise<JobFolderSignature | undefined> {
  const dir = join(root, 'jobs', job);
  if (isObjectLocation(root)) return objectFolderSignature(root, dir, now);
  // `now` is the server's clock: the real time in a server, as the file system's times are.
  const nowNs = BigInt(now.getTime()) * 1_000_000n;
  let folder;
  try {
    folder = statSync(dir, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw fromFsError(err, 'stat', dir);
    settledFolders.delete(dir);
    return undefined;
  }
  if (!folder.isDirectory()) return undefined;
  let known = settledFolders.get(dir);
  if (known === undefined || known.mtimeNs !== folder.mtimeNs || known.ino !== folder.ino) {
    let names: string[];
    try {
      names = readdirSync(dir)
        .filter((n) => n === JOB_FILE || n === HEALTH_FILE || n === CAPACITY_RECORD_FILE || isBackupFile(n))
        .sort();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw fromFsError(err, 'listing', dir);
    }
    known = {
      mtimeNs: folder.mtimeNs,
      ino: folder.ino,
      names,
      settled: await statAll(
        dir,
        names.filter((n) => !isFull(n)),
      ),
    };
    // A folder changed within the timestamp step may change again under the same time: not kept.
    if (!racyWithin(folder.mtimeNs, nowNs)) settledFolders.set(dir, known);
    else settledFolders.delete(dir);
  }
  if (!known.names.includes(JOB_FILE)) return undefined;
  const files = [...known.settled, ...statAll(dir, known.names.filter(isFull))];
  if (!files.some((f) => f.name === JOB_FILE)) return undefined;
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const hash = createHash('sha256').update(`day ${now.toISOString().slice(0, 10)}\nfolder ${folder.mtimeNs} ${folder.ino}\n${tier ?? tierSetting(root)}\n`);
  const fileBytes = new Map<string, number>();
  let racy = racyWithin(folder.mtimeNs, nowNs);
  for (const f of files) {
    if (racyWithin(f.mtimeNs, nowNs)) racy = true;
    hash.update(`${f.name}\t${f.size}\t${f.mtimeNs}\t${f.ino}\n`);
    if (isBackupFile(f.name)) fileBytes.set(f.name, Number(f.size));
  }
  return { signature: hash.digest('hex').slice(0, 32), fileBytes, backupBytes: [...fileBytes.values()].reduce((a, b) => a + b, 0), racy };
}

/**
 * A job folder's signature on object storage: one listing of its roots. A
 * commit makes a new root (a new generation in its name), so names,
 * generations and sizes say every change, and no signature is racy. (A file
 * removed and made again starts its generations again: only its root's size
 * tells it from the old one.)
 */
async function objectFolderSignature(root: string, dir: string, now: Date): Promise<JobFolderSignature | undefined> {
  const files = await objectFolderFiles(root, dir, (name) => name === JOB_FILE || name === HEALTH_FILE || isBackupFile(name));
  if (!files.some((f) => f.name === JOB_FILE)) return undefined;
  const hash = createHash('sha256').update(`day ${now.toISOString().slice(0, 10)}\n`);
  const fileBytes = new Map<string, number>();
  for (const f of files) {
    hash.update(`${f.name}\t${f.size}\t${f.generation}\t${f.rootBytes}\n`);
    if (isBackupFile(f.name)) fileBytes.set(f.name, Math.max(0, f.size));
  }
  return { signature: hash.digest('hex').slice(0, 32), fileBytes, backupBytes: [...fileBytes.values()].reduce((a, b) => a + b, 0), racy: false };
}
