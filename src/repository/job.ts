import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { JOB_NAME_RE, newUuid } from '../core/ids.js';
import { WEEKDAYS, type Weekday } from '../core/clock.js';
import { parseCron, parseDuration, parseWindow, type ScheduleSettings } from '../core/schedule-text.js';
import type { VmConfig } from '../format/root.js';
import { readCheckedJson, writeCheckedJson } from './checked-json.js';
import type { Repository } from './repository.js';

export const JOB_FILE = 'job.json';
export const BACKUP_METHODS = ['forward', 'forever', 'reverse'] as const;
export type BackupMethod = (typeof BACKUP_METHODS)[number];

/** What a job protects and how. Stored in jobs/<job>/job.json. */
/** A backup job (job.json); its retries default to DEFAULT_RETRIES. */
export interface JobDefinition extends ScheduleSettings {
  readonly version: 1;
  readonly jobId: string;
  readonly name: string;
  readonly createdAt: string;
  /** Source paths, one per disk, in disk order. */
  readonly disks: readonly string[];
  readonly method: BackupMethod;
  readonly retainPoints: number;
  /** Retention by days instead of points (at least 3 points are kept); absent = by points. */
  readonly retainDays?: number | undefined;
  readonly activeFullDays: readonly Weekday[];
  /** Long-term retention of fulls (forward and forever chains). */
  readonly gfs?: { readonly weekly: number; readonly monthly: number; readonly yearly: number } | undefined;
  /** Forward incremental only: weekdays on which a synthetic full is built after the increment. */
  readonly syntheticFullDays?: readonly Weekday[] | undefined;
  /** With synthetic fulls: the chain a synthetic full was built from becomes rollbacks of it (one full kept). */
  readonly transformToRollbacks?: boolean | undefined;
  /** Changed-block tracking through persistent dirty bitmaps of qcow2 images (falls back to hashes). */
  readonly cbt?: boolean | undefined;
  /** Format of the disk images when not detected (raw, qcow2, vmdk, vhdx, vdi). */
  readonly diskFormat?: string | undefined;
  readonly blockSize: number;
  readonly compression: string;
  /** VM configuration given with --vm-config; missing fields are filled at each backup. */
  readonly vm: Partial<VmConfig> | null;
  /** An http(s) URL the server POSTs each ended run to (JSON), retried a few times. */
  readonly webhook?: string | undefined;
  /**
   * The data mover, or group of movers, that runs the job's backups for the server (`lifeboat mover --name`
   * or `--group` on a host that reaches the job's disks); absent: the server itself.
   */
  readonly mover?: string | undefined;
}

export const MAX_RETRIES = 100;

export function validateJobName(name: string): void {
  if (!JOB_NAME_RE.test(name)) {
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `job name "${name}" must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

export function parseWeekdays(text: string, flag: string): Weekday[] {
  const days = text
    .split(',')
    .map((d) => d.trim().toLowerCase().slice(0, 3))
    .filter((d) => d !== '');
  for (const d of days) {
    if (!(WEEKDAYS as readonly string[]).includes(d))
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${flag}: "${d}" is not a weekday (use mon,tue,wed,thu,fri,sat,sun)`);
  }
  return [...new Set(days)] as Weekday[];
}

export async function createJob(repo: Repository, def: Omit<JobDefinition, 'version' | 'jobId'>): Promise<JobDefinition> {
  validateJobName(def.name);
  const dir = repo.jobDir(def.name);
  if ((await repo.storage.list(dir)).includes(JOB_FILE)) {
    throw new LifeboatError('LFB_ERR_JOB_EXISTS', `job "${def.name}" already exists in ${repo.root}`, { details: { job: def.name } });
  }
  validateJobSettings(def);
  if (def.after !== undefined) await checkAfter(repo, def.name, def.after);
  const full: JobDefinition = { version: 1, jobId: newUuid(), ...def };
  await repo.storage.mkdir(dir);
  await writeCheckedJson(join(dir, JOB_FILE), full, repo.storage);
  return full;
}

/** The rules a job's settings obey, for `job create` and `job set` alike. */
export function validateJobSettings(def: Omit<JobDefinition, 'version' | 'jobId'>): void {
  if (def.disks.length === 0) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'a job needs at least one --disk');
  if (!Number.isInteger(def.retainPoints) || def.retainPoints < 1)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', '--retain-points must be a whole number ≥ 1');
  if (def.retainDays !== undefined && (!Number.isInteger(def.retainDays) || def.retainDays < 1))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', '--retain-days must be a whole number ≥ 1');
  if (def.gfs && def.method === 'reverse')
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', '--gfs does not apply to reverse-incremental chains (their full always moves to the newest point)');
  if ((def.syntheticFullDays?.length ?? 0) > 0 && def.method !== 'forward')
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', '--synthetic-full needs --method forward (a forever-forward chain has one full by design)');
  if (def.transformToRollbacks && (def.syntheticFullDays?.length ?? 0) === 0)
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      '--transform-to-rollbacks needs --synthetic-full <weekday,…> (the transform follows each synthetic full)',
    );
  if (def.transformToRollbacks && def.gfs)
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      '--transform-to-rollbacks and --gfs exclude each other: GFS keeps old fulls, the transform turns them into rollbacks',
    );
  if (def.schedule !== undefined) parseCron(def.schedule, '--schedule');
  if (def.window !== undefined) parseWindow(def.window, '--window');
  if (def.retries !== undefined && (!Number.isInteger(def.retries) || def.retries < 0 || def.retries > MAX_RETRIES))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--retries must be a whole number from 0 to ${MAX_RETRIES}, not ${String(def.retries)}`);
  if (def.retryDelay !== undefined) parseDuration(def.retryDelay, '--retry-delay');
  if (def.after !== undefined) {
    if (!JOB_NAME_RE.test(def.after)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--after: "${def.after}" is not a job name`);
    if (def.after === def.name) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--after: job "${def.name}" cannot run after itself`);
  }
  if (def.webhook !== undefined) checkWebhook(def.webhook);
  if (def.mover !== undefined && !JOB_NAME_RE.test(def.mover))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--mover: "${def.mover}" is not a mover's name or group (letters, digits, '.', '_', '-')`);
  if (def.disabled !== undefined && typeof def.disabled !== 'boolean')
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', '--disabled is on or off (true or false in job.json)');
  if (def.diskFormat !== undefined && !['raw', 'qcow2', 'vmdk', 'vhdx', 'vdi', 'vpc', 'qed'].includes(def.diskFormat))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--disk-format must be one of raw, qcow2, vmdk, vhdx, vdi, vpc, qed, not "${def.diskFormat}"`);
}

/**
 * `after` must name a job of the same repository, and following the chain
 * from it must not come back to `name` (a loop would run its jobs forever).
 */
export async function checkAfter(repo: Repository, name: string, after: string): Promise<void> {
  const jobs = new Set(await repo.listJobs());
  const seen = [name];
  for (let next: string | undefined = after; next !== undefined;) {
    if (!jobs.has(next))
      throw new LifeboatError(
        'LFB_ERR_INVALID_ARGUMENT',
        next === after ? `--after: no job "${after}" in ${repo.root}` : `--after: job "${seen.at(-1)!}" runs after "${next}", which does not exist`,
        { details: { job: next } },
      );
    if (seen.includes(next)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--after: a loop of jobs (${[...seen, next].join(' → ')}) would run forever`);
    seen.push(next);
    next = (await loadJob(repo, next)).after;
  }
}

export async function loadJob(repo: Repository, name: string): Promise<JobDefinition> {
  validateJobName(name);
  const path = join(repo.jobDir(name), JOB_FILE);
  if (!(await repo.storage.list(repo.jobDir(name))).includes(JOB_FILE)) {
    const known = await repo.listJobs();
    throw new LifeboatError(
      'LFB_ERR_JOB_NOT_FOUND',
      `no job "${name}" in ${repo.root}${known.length ? ` (jobs: ${known.join(', ')})` : ''}; create it with \`lifeboat job create\``,
      { details: { job: name } },
    );
  }
  return readCheckedJson<JobDefinition>(path, 'LFB_ERR_JOB_CORRUPT', repo.storage);
}

/** The job's short-term retention, as the planner takes it, at time `now`. */
export function retentionPolicy(
  job: JobDefinition,
  now: Date,
): { method: BackupMethod; retainPoints: number; retainDays?: number | undefined; now: string; gfs?: JobDefinition['gfs'] } {
  return { method: job.method, retainPoints: job.retainPoints, retainDays: job.retainDays, now: now.toISOString(), gfs: job.gfs };
}

/** Parses `weekly=4,monthly=12,yearly=3` (any subset). */
export function parseGfs(text: string): { weekly: number; monthly: number; yearly: number } {
  const out = { weekly: 0, monthly: 0, yearly: 0 };
  for (const part of text
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '')) {
    const m = /^(weekly|monthly|yearly)=(\d+)$/.exec(part);
    if (!m) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--gfs: "${part}" is not weekly=N, monthly=N or yearly=N`);
    out[m[1] as 'weekly' | 'monthly' | 'yearly'] = Number(m[2]);
  }
  return out;
}

/** A webhook is an absolute http or https URL (no credentials in it: they would show in `job show` and logs). */
export function checkWebhook(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--webhook: "${url}" is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--webhook must be an http or https URL, not ${u.protocol}`);
  if (u.username !== '' || u.password !== '')
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      '--webhook: put no user or password in the URL (it is shown by `job show`); use a secret path or query instead',
    );
}
