import { join } from 'node:path';
import { repositoryRoot } from '../repository/location.js';
import { LifeboatError } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { parseCron, parseWindow } from '../core/schedule-text.js';
import { parseCompression } from '../compress/codec.js';
import { readCheckedJson, writeCheckedJson } from '../repository/checked-json.js';
import { createJob, loadJob, validateJobName, type JobDefinition } from '../repository/job.js';
import { Repository } from '../repository/repository.js';
import { removeDurable } from '../storage/index.js';

export const COPIES_DIR = 'copies';

/**
 * A backup copy job: every new point of job `job` of the repository it is
 * stored in (`<repo>/copies/<name>.json`) goes to job `job` of repository
 * `toRepo`, with the retention given here.
 */
export interface CopyJobDefinition {
  readonly version: 1;
  readonly copyId: string;
  readonly name: string;
  readonly createdAt: string;
  /** The source job (of the repository the definition is in). */
  readonly job: string;
  /** The target repository's folder (absolute). */
  readonly toRepo: string;
  readonly retainPoints: number;
  readonly retainDays?: number | undefined;
  readonly gfs?: { readonly weekly: number; readonly monthly: number; readonly yearly: number } | undefined;
  /** When `lifeboat serve` runs the copy by itself (cron) and in which daily window (runs start and go on inside it). */
  readonly schedule?: string | undefined;
  readonly window?: string | undefined;
  /** The backup job of the source repository whose successful runs queue a run of the copy (usually `job`). */
  readonly after?: string | undefined;
}

export type CopySettings = Omit<CopyJobDefinition, 'version' | 'copyId' | 'createdAt'>;

function copyPath(repo: Repository, name: string): string {
  return join(repo.root, COPIES_DIR, `${name}.json`);
}

function validate(def: CopySettings): void {
  validateJobName(def.name);
  validateJobName(def.job);
  if (!Number.isInteger(def.retainPoints) || def.retainPoints < 1)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', '--retain-points must be a whole number ≥ 1');
  if (def.retainDays !== undefined && (!Number.isInteger(def.retainDays) || def.retainDays < 1))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', '--retain-days must be a whole number ≥ 1');
  if (def.schedule !== undefined) parseCron(def.schedule, '--schedule');
  if (def.window !== undefined) parseWindow(def.window, '--window');
  if (def.after !== undefined) validateJobName(def.after);
}

/** The target job's definition: forward incremental, the copy's retention, no source of its own (its points come by copy). */
function targetJobSettings(def: CopySettings, source: JobDefinition, target: Repository, now: Date): Omit<JobDefinition, 'version' | 'jobId'> {
  return {
    name: def.job,
    createdAt: now.toISOString(),
    disks: source.disks,
    method: 'forward',
    retainPoints: def.retainPoints,
    retainDays: def.retainDays,
    activeFullDays: [],
    gfs: def.gfs,
    blockSize: target.config.blockSize,
    compression: target.config.compression,
    vm: source.vm,
  };
}

/**
 * Records a copy job. The target repository is made if it does not exist
 * (with the source's block size and compression); one with another block
 * size is refused, since copied blocks keep their size. The target job is
 * made too, or checked if it exists (it must be forward incremental).
 */
export async function createCopyJob(sourceRoot: string, settings: CopySettings, now: Date): Promise<CopyJobDefinition> {
  validate(settings);
  const source = await Repository.open(sourceRoot);
  const sourceJob = await loadJob(source, settings.job);
  const toRepo = repositoryRoot(settings.toRepo);
  if (toRepo === source.root) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', '--to-repo must be another repository than --repo');
  const path = copyPath(source, settings.name);
  if ((await source.storage.list(join(source.root, COPIES_DIR)).catch(() => [] as string[])).includes(`${settings.name}.json`))
    throw new LifeboatError('LFB_ERR_JOB_EXISTS', `the copy job "${settings.name}" exists already in ${source.root}`, { details: { copyJob: settings.name } });
  const target = await openOrInitTarget(source, toRepo, now);
  await ensureTargetJob(target, { ...settings, toRepo }, sourceJob, now);
  const def: CopyJobDefinition = { version: 1, copyId: newUuid(), createdAt: now.toISOString(), ...settings, toRepo };
  await source.storage.mkdir(join(source.root, COPIES_DIR));
  await writeCheckedJson(path, def, source.storage);
  return def;
}

async function openOrInitTarget(source: Repository, toRepo: string, now: Date): Promise<Repository> {
  const target = await Repository.open(toRepo).catch(async (err: unknown) => {
    if (!(err instanceof LifeboatError) || err.code !== 'LFB_ERR_REPO_NOT_FOUND') throw err;
    // An encrypted source's copy is encrypted with the same key (its sealed blocks are copied as they are).
    return Repository.init(toRepo, {
      blockSize: source.config.blockSize,
      compression: parseCompression(source.config.compression),
      now,
      encrypt: source.config.encryption === undefined ? undefined : { keyFrom: source },
    });
  });
  checkTarget(source, target);
  return target;
}

/** Copied blocks keep their size and their seal: a target of another block size, or without the source's key, cannot hold them. */
export function checkTarget(source: Repository, target: Repository): void {
  if (source.config.encryption?.keyId !== target.config.encryption?.keyId)
    throw new LifeboatError(
      'LFB_ERR_KEY_MISMATCH',
      source.config.encryption === undefined
        ? `${target.root} is encrypted but ${source.root} is not: a copy target of a plain repository must be plain`
        : `${source.root} is encrypted and ${target.root} does not share its key: name a new folder (copy create makes it with the key) or one made with \`lifeboat repo init <dir> --key-from ${source.root}\``,
      { details: { repo: target.root } },
    );
  if (target.config.blockSize !== source.config.blockSize)
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `${target.root} has blocks of ${target.config.blockSize} bytes, ${source.root} of ${source.config.blockSize}: a copy keeps stored blocks as they are, so the target needs the same block size`,
      { details: { target: target.root, blockSize: target.config.blockSize, sourceBlockSize: source.config.blockSize } },
    );
}

/** The target's job, made when missing; one that exists must be forward incremental (the copy writes fulls and increments only). */
export async function ensureTargetJob(target: Repository, def: CopySettings, sourceJob: JobDefinition, now: Date): Promise<JobDefinition> {
  const existing = await loadJob(target, def.job).catch((err: unknown) => {
    if (err instanceof LifeboatError && err.code === 'LFB_ERR_JOB_NOT_FOUND') return undefined;
    throw err;
  });
  if (existing === undefined) return createJob(target, targetJobSettings(def, sourceJob, target, now));
  if (existing.method !== 'forward')
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `job "${def.job}" of ${target.root} is ${existing.method} incremental; a copy target job must be forward`,
      {
        details: { target: target.root, job: def.job },
      },
    );
  return existing;
}

export async function loadCopyJob(source: Repository, name: string): Promise<CopyJobDefinition> {
  validateJobName(name);
  const names = await source.storage.list(join(source.root, COPIES_DIR)).catch(() => [] as string[]);
  if (!names.includes(`${name}.json`)) {
    const known = names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5));
    throw new LifeboatError(
      'LFB_ERR_JOB_NOT_FOUND',
      `no copy job "${name}" in ${source.root}${known.length ? ` (copy jobs: ${known.join(', ')})` : ''}; create it with \`lifeboat copy create\``,
      { details: { copyJob: name } },
    );
  }
  return readCheckedJson<CopyJobDefinition>(copyPath(source, name), 'LFB_ERR_JOB_CORRUPT', source.storage);
}

export async function listCopyJobs(source: Repository): Promise<CopyJobDefinition[]> {
  const names = await source.storage.list(join(source.root, COPIES_DIR)).catch(() => [] as string[]);
  const out: CopyJobDefinition[] = [];
  for (const n of names.filter((x) => x.endsWith('.json') && !x.startsWith('.')).sort()) out.push(await loadCopyJob(source, n.slice(0, -5)));
  return out;
}

/** Forgets the copy job; the target repository and its points stay (they are a backup of their own). */
export async function deleteCopyJob(source: Repository, name: string): Promise<void> {
  await loadCopyJob(source, name);
  await removeDurable(copyPath(source, name), source.storage);
}
