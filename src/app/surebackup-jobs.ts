import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { JOB_NAME_RE } from '../core/ids.js';
import { formatDuration, formatWindow, parseCron, parseDuration, parseWindow, type ScheduleSettings } from '../core/schedule-text.js';
import { DEFAULT_BOOT_TIMEOUT_S, parseLabGroup, parseVmText } from '../lab/lab-group.js';
import type { LabVmSpec } from '../lab/types.js';

export { DEFAULT_BOOT_TIMEOUT_S };
import { folderRepositoryRoot, isObjectLocation } from '../repository/index.js';
import { removeDurable, writeFileAtomic } from '../storage/index.js';

/**
 * A SureBackup job: an application group the service boots and tests by
 * itself, on a schedule or after a backup job, stored in the repository
 * (`<repo>/surebackup/jobs/<name>.json`). The group is kept as the texts of
 * `surebackup run`'s flags and checked by the same rules (src/lab/lab-group.ts).
 */
/** Its retries default to SUREBACKUP_DEFAULT_RETRIES. */
export interface SureBackupJob extends ScheduleSettings {
  readonly name: string;
  /** `<job>[@<point>]` in boot order. */
  readonly vms: readonly string[];
  readonly waitFor?: readonly string[] | undefined;
  readonly ports?: readonly string[] | undefined;
  readonly http?: readonly string[] | undefined;
  /** Absolute paths. */
  readonly scripts?: readonly string[] | undefined;
  readonly serialPattern?: string | undefined;
  /** Seconds each VM has to pass its heartbeat (default DEFAULT_BOOT_TIMEOUT_S). */
  readonly timeoutS?: number | undefined;
  readonly accel?: 'kvm' | 'tcg' | undefined;
  /** Each VM without `@point` boots the oldest point of its job without a SureBackup result. */
  readonly everyPoint?: boolean | undefined;
}

/**
 * A failed test is a finding about the backup, not a fault that goes away:
 * a SureBackup job is not retried unless its settings say so.
 */
export const SUREBACKUP_DEFAULT_RETRIES = 0;

const FIELDS = [
  'name',
  'vms',
  'waitFor',
  'ports',
  'http',
  'scripts',
  'serialPattern',
  'timeoutS',
  'accel',
  'everyPoint',
  'schedule',
  'window',
  'retries',
  'retryDelay',
  'after',
  'disabled',
] as const;

export const sureBackupJobsDir = (repoRoot: string): string => join(repoRoot, 'surebackup', 'jobs');
/** A SureBackup job's file; a repository on object storage has none (LFB_ERR_STORE_UNSUPPORTED: its labs keep state in folders). */
const fileOf = (repoRoot: string, name: string): string => join(sureBackupJobsDir(folderRepositoryRoot(repoRoot, 'SureBackup')), `${name}.json`);

const invalid = (message: string): LifeboatError => new LifeboatError('LFB_ERR_INVALID_ARGUMENT', message);

export function checkSureBackupJobName(name: string): void {
  if (!JOB_NAME_RE.test(name))
    throw invalid(`"${name}" is not a SureBackup job name (letters, digits, dot, dash, underscore; at most 64; not starting with a dot or dash)`);
}

/**
 * Checks a job as it will be stored and returns it in canonical form (window
 * and delay formatted, empty lists and defaults left out). Every rule of
 * `surebackup run`'s flags applies to the group.
 */
export function normalizeSureBackupJob(j: SureBackupJob): SureBackupJob {
  checkSureBackupJobName(j.name);
  const strings = (v: unknown, what: string): readonly string[] | undefined => {
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw invalid(`${what} must be a list of strings`);
    return v.length === 0 ? undefined : (v as string[]);
  };
  const vms = strings(j.vms, 'vms') ?? [];
  if (vms.length === 0) throw new LifeboatError('LFB_ERR_USAGE', 'a SureBackup job needs --vm <job>[@<point>] (once per VM of the group)');
  if (j.timeoutS !== undefined && typeof j.timeoutS !== 'number') throw invalid('timeoutS must be a number of seconds');
  if (j.serialPattern !== undefined && typeof j.serialPattern !== 'string') throw invalid('serialPattern must be a string');
  const group = {
    vms,
    waitFor: strings(j.waitFor, 'waitFor'),
    ports: strings(j.ports, 'ports'),
    http: strings(j.http, 'http'),
    scripts: strings(j.scripts, 'scripts'),
  };
  parseLabGroup({ ...group, bootTimeoutS: j.timeoutS, serialPattern: j.serialPattern });
  if (j.accel !== undefined && j.accel !== 'kvm' && j.accel !== 'tcg') throw invalid(`--accel must be kvm or tcg, not "${String(j.accel)}"`);
  if (j.retries !== undefined && (!Number.isInteger(j.retries) || j.retries < 0 || j.retries > 100))
    throw invalid(`--retries must be a whole number from 0 to 100, not ${String(j.retries)}`);
  if (j.schedule !== undefined) parseCron(j.schedule);
  if (j.after !== undefined && !JOB_NAME_RE.test(j.after)) throw invalid(`--after: "${j.after}" is not a job name`);
  if (j.everyPoint !== undefined && typeof j.everyPoint !== 'boolean') throw invalid('everyPoint must be true or false');
  if (j.disabled !== undefined && typeof j.disabled !== 'boolean') throw invalid('disabled must be true or false');
  const out: Record<string, unknown> = {
    name: j.name,
    ...group,
    serialPattern: j.serialPattern,
    timeoutS: j.timeoutS,
    accel: j.accel,
    everyPoint: j.everyPoint === true ? true : undefined,
    schedule: j.schedule?.trim(),
    window: j.window === undefined ? undefined : formatWindow(parseWindow(j.window)),
    retries: j.retries,
    retryDelay: j.retryDelay === undefined ? undefined : formatDuration(parseDuration(j.retryDelay)),
    after: j.after,
    disabled: j.disabled === true ? true : undefined,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as unknown as SureBackupJob;
}

/** The group the job boots, each VM with its tests (points as stored: "latest" for a VM without `@point`). */
export function sureBackupGroup(j: SureBackupJob): LabVmSpec[] {
  return parseLabGroup({ ...j, bootTimeoutS: j.timeoutS ?? DEFAULT_BOOT_TIMEOUT_S });
}

/** The group's VMs with whether each names its point. */
export const sureBackupVms = (j: SureBackupJob): { job: string; point: string; pinned: boolean }[] => j.vms.map(parseVmText);

/** The job from its file: a hand-edited file with an unknown field or a bad value is LFB_ERR_INVALID_ARGUMENT naming it. */
function parseStored(text: string, name: string, path: string): SureBackupJob {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw invalid(`${path} is not JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid(`${path} must hold a JSON object`);
  for (const k of Object.keys(raw)) if (!(FIELDS as readonly string[]).includes(k)) throw invalid(`${path}: unknown field "${k}"`);
  const j = raw as SureBackupJob;
  if (j.name !== name) throw invalid(`${path} names the job "${String(j.name)}", not "${name}"`);
  return normalizeSureBackupJob(j);
}

export async function loadSureBackupJob(repoRoot: string, name: string): Promise<SureBackupJob> {
  checkSureBackupJobName(name);
  const path = fileOf(repoRoot, name);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new LifeboatError('LFB_ERR_JOB_NOT_FOUND', `no SureBackup job "${name}" in ${repoRoot}`, { details: { surebackupJob: name, repo: repoRoot } });
    throw err;
  }
  return parseStored(text, name, path);
}

export async function listSureBackupJobNames(repoRoot: string): Promise<string[]> {
  // A repository on object storage cannot have any (fileOf): a server on one lists none, and runs none.
  if (isObjectLocation(repoRoot)) return [];
  try {
    return (await readdir(sureBackupJobsDir(repoRoot)))
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -5))
      .filter((n) => JOB_NAME_RE.test(n))
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Writes the job durably (temporary file, fsync, rename, fsync of the folder); `create` refuses a name in use (LFB_ERR_JOB_EXISTS). */
export async function saveSureBackupJob(repoRoot: string, job: SureBackupJob, opts: { create: boolean }): Promise<SureBackupJob> {
  const j = normalizeSureBackupJob(job);
  const path = fileOf(repoRoot, j.name);
  if (opts.create) {
    const exists = await readFile(path).then(
      () => true,
      () => false,
    );
    if (exists) throw new LifeboatError('LFB_ERR_JOB_EXISTS', `the SureBackup job "${j.name}" exists already`, { details: { surebackupJob: j.name } });
  } else {
    await loadSureBackupJob(repoRoot, j.name);
  }
  await mkdir(sureBackupJobsDir(repoRoot), { recursive: true });
  await writeFileAtomic(path, Buffer.from(JSON.stringify(j, null, 2) + '\n'));
  return j;
}

/** Removes the job's file; a hand-edited file that no longer reads is removed too (that is how it is mended). */
export async function deleteSureBackupJob(repoRoot: string, name: string): Promise<void> {
  checkSureBackupJobName(name);
  const path = fileOf(repoRoot, name);
  const exists = await readFile(path).then(
    () => true,
    () => false,
  );
  if (!exists)
    throw new LifeboatError('LFB_ERR_JOB_NOT_FOUND', `no SureBackup job "${name}" in ${repoRoot}`, { details: { surebackupJob: name, repo: repoRoot } });
  await removeDurable(path);
}
