import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { immutableFiles, probeImmutable, setImmutable } from '../storage/immutable-flag.js';
import type { Storage } from '../storage/index.js';
import { ObjectFileStorage } from '../objects/object-files.js';
import { readCheckedJson, writeCheckedJson } from './checked-json.js';
import { DAY_MS, immutableUntil } from './immutable-until.js';
import type { JobDefinition } from './job.js';
import type { JobState } from './job-state.js';
import type { Repository } from './repository.js';

/**
 * An immutable (hardened) repository (`repo init --immutable-days N`): each
 * backup file, once committed, gets the file system's immutable attribute,
 * and jobs/<job>/immutable.json records until when (docs/format.md). Only
 * what never changes a committed file runs there (docs/design.md
 * §Immutable repositories).
 */
export const IMMUTABLE_RECORD = 'immutable.json';

interface RecordBody {
  readonly format: 'lifeboat-immutable';
  readonly version: 1;
  /** backup file name → immutable until (ISO). */
  readonly files: Record<string, string>;
}

export function immutableDaysOf(repo: Repository): number | undefined {
  return repo.config.immutableDays;
}

/** file name → immutable-until date. No record (nothing sealed yet) is an empty map. */
export async function readImmutableRecord(dir: string, storage: Storage): Promise<Map<string, Date>> {
  if (!(await storage.list(dir).catch(() => [] as string[])).includes(IMMUTABLE_RECORD)) return new Map();
  const body = await readCheckedJson<RecordBody>(join(dir, IMMUTABLE_RECORD), 'LFB_ERR_JOB_CORRUPT', storage);
  return new Map(Object.entries(body.files).map(([name, until]) => [name, new Date(until)]));
}

async function writeImmutableRecord(dir: string, record: ReadonlyMap<string, Date>, storage: Storage): Promise<void> {
  const files = Object.fromEntries([...record].sort(([a], [b]) => a.localeCompare(b)).map(([n, d]) => [n, d.toISOString()]));
  await writeCheckedJson(join(dir, IMMUTABLE_RECORD), { format: 'lifeboat-immutable', version: 1, files } satisfies RecordBody, storage);
}

/** Drops the record's entries of files that are gone (deleted by retention or `job delete`). */
export async function forgetDeleted(dir: string, names: readonly string[], storage: Storage): Promise<void> {
  const record = await readImmutableRecord(dir, storage);
  const before = record.size;
  for (const n of names) record.delete(n);
  if (record.size !== before) await writeImmutableRecord(dir, record, storage);
}

const NAME_STAMP = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z_/;

/**
 * The earliest a backup file may lose its attribute whatever immutable.json
 * says: the time in its name (its run's time, `<stamp>_<point>.<ext>`) plus
 * the repository's days. immutable.json and job.json are ordinary files that
 * whoever can write the folder can back-date or delete; a sealed file's name
 * cannot change (no rename or link of an immutable file) and lifeboat.json is
 * sealed at `repo init`, so this bound holds against them.
 */
export function nameFloor(name: string, immutableDays: number): Date | undefined {
  const m = NAME_STAMP.exec(name);
  if (!m) return undefined;
  const [y, mo, d, h, mi, sec] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  return new Date(Date.UTC(y, mo - 1, d, h, mi, sec) + immutableDays * DAY_MS);
}

/** A backup file's immutable-until date: the later of its record's and its name's floor (with the days; undefined when it has neither). */
export function untilOf(record: ReadonlyMap<string, Date>, name: string, immutableDays: number | undefined): Date | undefined {
  const recorded = record.get(name);
  const floor = immutableDays === undefined ? undefined : nameFloor(name, immutableDays);
  if (recorded === undefined || floor === undefined) return recorded ?? floor;
  return recorded > floor ? recorded : floor;
}

/** The latest immutable-until date among `names` that has not come yet at `now`, or undefined. */
export function blockedUntil(record: ReadonlyMap<string, Date>, names: readonly string[], now: Date, immutableDays: number | undefined): Date | undefined {
  let latest: Date | undefined;
  for (const n of names) {
    const d = untilOf(record, n, immutableDays);
    if (d !== undefined && d.getTime() > now.getTime() && (latest === undefined || d > latest)) latest = d;
  }
  return latest;
}

const WHY =
  'an immutable repository runs only methods that never change a committed backup file: forward incremental with active or synthetic fulls (docs/design.md §Immutable repositories)';

/** Refuses, on an immutable repository, a job whose method or settings rewrite committed files. */
export function refuseRewritingJob(repo: Repository, def: Pick<JobDefinition, 'method' | 'transformToRollbacks'> & { readonly name: string }): void {
  if (immutableDaysOf(repo) === undefined) return;
  if (def.method !== 'forward') {
    const what =
      def.method === 'forever'
        ? 'forever forward incremental merges the oldest increment into the full in place'
        : 'reverse incremental rewrites the full at every run';
    throw new LifeboatError(
      'LFB_ERR_IMMUTABLE',
      `job "${def.name}": ${repo.root} is an immutable repository and ${what}; ${WHY}. Use --method forward --active-full <weekdays> (or --synthetic-full)`,
      { details: { job: def.name, method: def.method } },
    );
  }
  if (def.transformToRollbacks === true) {
    throw new LifeboatError(
      'LFB_ERR_IMMUTABLE',
      `job "${def.name}": ${repo.root} is an immutable repository and --transform-to-rollbacks rewrites the older chain into rollbacks; ${WHY}`,
      { details: { job: def.name } },
    );
  }
}

/** Refuses a command that rewrites committed files (compact) on an immutable repository. */
export function refuseOnImmutable(repo: Repository, command: string, what: string): void {
  if (immutableDaysOf(repo) === undefined) return;
  throw new LifeboatError('LFB_ERR_IMMUTABLE', `${command}: ${repo.root} is an immutable repository and ${what}; ${WHY}`, {
    details: { repo: repo.root, command },
  });
}

/** Before a backup run on an immutable repository: the job must not rewrite files, and the file system must still enforce the attribute. */
export async function guardImmutableBackup(repo: Repository, job: JobDefinition): Promise<void> {
  if (immutableDaysOf(repo) === undefined) return;
  refuseRewritingJob(repo, job);
  if (repo.storage instanceof ObjectFileStorage) {
    // Object lock is the bucket's, set at its creation: there is no attribute to probe, only that it is still on.
    if (!repo.storage.store.retention)
      throw new LifeboatError('LFB_ERR_IMMUTABLE_UNSUPPORTED', `${repo.storage.store.location} has no object lock, which an immutable repository needs`, {
        details: { repo: repo.root },
      });
    return;
  }
  await probeImmutable(join(repo.root, 'cache'));
}

/**
 * Seals the job's committed backup files that are not sealed yet: each gets
 * its date in the record (written durably first, so a crash never leaves an
 * immutable file without a date), then the attribute. Files whose date has
 * not come and lost the attribute (a crash between the record and chattr)
 * get it again; files whose date has come are left as they are (retention
 * may be unlocking them). Returns the names sealed now.
 */
export async function sealJobFiles(repo: Repository, job: JobDefinition, state: JobState, now: Date): Promise<string[]> {
  const days = immutableDaysOf(repo);
  if (days === undefined) return [];
  const { dir, storage } = state;
  const record = await readImmutableRecord(dir, storage);
  const present = new Set(await storage.list(dir));
  let changed = false;
  for (const n of [...record.keys()]) {
    if (present.has(n)) continue;
    record.delete(n);
    changed = true;
  }
  const sealed: string[] = [];
  for (const f of state.chains.flatMap((c) => [...c.rollbacks, c.full, ...c.increments])) {
    if (record.has(f.name)) continue;
    record.set(f.name, immutableUntil({ createdAt: new Date(f.root.createdAtMs), sealedAt: now, immutableDays: days, retainDays: job.retainDays }));
    sealed.push(f.name);
    changed = true;
  }
  if (changed) await writeImmutableRecord(dir, record, storage);
  // On object storage each file's objects got their lock as they were written (object-retention.ts).
  if (storage instanceof ObjectFileStorage) return sealed;
  const due = [...record.keys()].filter((n) => (untilOf(record, n, days)?.getTime() ?? 0) > now.getTime()).map((n) => join(dir, n));
  const flagged = await immutableFiles(due);
  await setImmutable(
    due.filter((p) => !flagged.has(p)),
    true,
  );
  return sealed;
}

/**
 * Before `job delete --with-points`: refuses while a backup file's date has
 * not come, else clears the attribute of every backup file so they can go.
 */
export async function unlockJobForDelete(repo: Repository, job: string, names: readonly string[], now: Date): Promise<void> {
  if (immutableDaysOf(repo) === undefined || names.length === 0) return;
  const days = immutableDaysOf(repo)!;
  const dir = repo.jobDir(job);
  const record = await readImmutableRecord(dir, repo.storage);
  const until = blockedUntil(record, names, now, days);
  if (until !== undefined) {
    const still = names.filter((n) => (untilOf(record, n, days)?.getTime() ?? 0) > now.getTime());
    throw new LifeboatError(
      'LFB_ERR_IMMUTABLE',
      `job "${job}" cannot be deleted with its points: ${still.length} backup file(s) of it are immutable until ${until.toISOString()} (the first: ${still[0]!}, until ${untilOf(record, still[0]!, days)!.toISOString()}); nothing was deleted`,
      { details: { job, until: until.toISOString(), files: still } },
    );
  }
  // Object locks end by themselves at their date: nothing to clear.
  if (repo.storage instanceof ObjectFileStorage) return;
  const paths = names.map((n) => join(dir, n));
  const flagged = await immutableFiles(paths);
  await setImmutable(
    paths.filter((p) => flagged.has(p)),
    false,
  );
}

/**
 * The last guard of a method that rewrites committed files (merge, reverse
 * run, transform): a job folder with an immutability record is on an
 * immutable repository, whatever the caller checked before.
 */
export async function refuseSealedJob(dir: string, storage: Storage, what: string): Promise<void> {
  if (!(await storage.list(dir).catch(() => [] as string[])).includes(IMMUTABLE_RECORD)) return;
  throw new LifeboatError('LFB_ERR_IMMUTABLE', `${what} would rewrite committed backup files in ${dir}, which are immutable; ${WHY}`, { details: { dir } });
}
