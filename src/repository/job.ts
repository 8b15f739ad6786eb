import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { JOB_NAME_RE, newUuid } from '../core/ids.js';
import { WEEKDAYS, type Weekday } from '../core/clock.js';
import type { VmConfig } from '../format/root.js';
import { readCheckedJson, writeCheckedJson } from './checked-json.js';
import type { Repository } from './repository.js';

export const JOB_FILE = 'job.json';
export const BACKUP_METHODS = ['forward', 'forever', 'reverse'] as const;
export type BackupMethod = (typeof BACKUP_METHODS)[number];

/** What a job protects and how. Stored in jobs/<job>/job.json. */
export interface JobDefinition {
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
  /** Forward incremental only: weekdays on which a synthetic full is built after the increment. */
  readonly syntheticFullDays?: readonly Weekday[] | undefined;
  readonly blockSize: number;
  readonly compression: string;
  /** VM configuration given with --vm-config; missing fields are filled at each backup. */
  readonly vm: Partial<VmConfig> | null;
}

export function validateJobName(name: string): void {
  if (!JOB_NAME_RE.test(name)) {
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `job name "${name}" must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}

export function parseWeekdays(text: string, flag: string): Weekday[] {
  const days = text.split(',').map((d) => d.trim().toLowerCase().slice(0, 3)).filter((d) => d !== '');
  for (const d of days) {
    if (!(WEEKDAYS as readonly string[]).includes(d)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${flag}: "${d}" is not a weekday (use mon,tue,wed,thu,fri,sat,sun)`);
  }
  return [...new Set(days)] as Weekday[];
}

export async function createJob(repo: Repository, def: Omit<JobDefinition, 'version' | 'jobId'>): Promise<JobDefinition> {
  validateJobName(def.name);
  const dir = repo.jobDir(def.name);
  if (await stat(join(dir, JOB_FILE)).catch(() => undefined)) {
    throw new LifeboatError('LFB_ERR_JOB_EXISTS', `job "${def.name}" already exists in ${repo.root}`, { details: { job: def.name } });
  }
  if (def.disks.length === 0) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'a job needs at least one --disk');
  if (!Number.isInteger(def.retainPoints) || def.retainPoints < 1) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', '--retain-points must be a whole number ≥ 1');
  if (def.retainDays !== undefined && (!Number.isInteger(def.retainDays) || def.retainDays < 1)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', '--retain-days must be a whole number ≥ 1');
  if ((def.syntheticFullDays?.length ?? 0) > 0 && def.method !== 'forward') throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', '--synthetic-full needs --method forward (a forever-forward chain has one full by design)');
  const full: JobDefinition = { version: 1, jobId: newUuid(), ...def };
  await mkdir(dir, { recursive: true });
  await writeCheckedJson(join(dir, JOB_FILE), full);
  return full;
}

export async function loadJob(repo: Repository, name: string): Promise<JobDefinition> {
  validateJobName(name);
  const path = join(repo.jobDir(name), JOB_FILE);
  if (!(await stat(path).catch(() => undefined))) {
    const known = await repo.listJobs();
    throw new LifeboatError('LFB_ERR_JOB_NOT_FOUND', `no job "${name}" in ${repo.root}${known.length ? ` (jobs: ${known.join(', ')})` : ''}; create it with \`lifeboat job create\``, { details: { job: name } });
  }
  return readCheckedJson<JobDefinition>(path, 'LFB_ERR_JOB_CORRUPT');
}

/** The job's short-term retention, as the planner takes it, at time `now`. */
export function retentionPolicy(job: JobDefinition, now: Date): { method: BackupMethod; retainPoints: number; retainDays?: number | undefined; now: string } {
  return { method: job.method, retainPoints: job.retainPoints, retainDays: job.retainDays, now: now.toISOString() };
}
