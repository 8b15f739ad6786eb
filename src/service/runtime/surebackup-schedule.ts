import { listSureBackupJobNames, loadSureBackupJob, SUREBACKUP_DEFAULT_RETRIES } from '../../app/surebackup-jobs.js';
import type { RunKind } from '../../catalog/catalog.js';
import type { ScheduledJob } from '../../schedule/index.js';

/**
 * A job's key for the scheduler. Keys of SureBackup jobs start with
 * `surebackup:`, those of copy jobs with `copy:` and a capacity tier's with `tier:`, which no backup job's
 * key does (those start with the repository's absolute path), so a
 * SureBackup job, a copy job and a backup job of the same name are three
 * jobs to decide().
 */
const PREFIXES: Readonly<Record<Exclude<RunKind, 'backup'>, string>> = { surebackup: 'surebackup:', copy: 'copy:', tier: 'tier:' };

/** A job's key for the scheduler: its kind, repository and name (never shown). */
export const runtimeKey = (kind: RunKind, repo: string, job: string): string => `${kind === 'backup' ? '' : PREFIXES[kind]}${repo}\n${job}`;

export function splitRuntimeKey(key: string): { kind: RunKind; repo: string; job: string } {
  const found = (Object.entries(PREFIXES) as [Exclude<RunKind, 'backup'>, string][]).find(([, p]) => key.startsWith(p));
  const kind: RunKind = found?.[0] ?? 'backup';
  const rest = found ? key.slice(found[1].length) : key;
  const i = rest.lastIndexOf('\n');
  return { kind, repo: rest.slice(0, i), job: rest.slice(i + 1) };
}

/**
 * The repository's SureBackup jobs, read each round as job.json is (a
 * `surebackup job set` from the CLI counts at once). A run takes a task of
 * the cap for each VM it boots; `after` names a backup job of the repository.
 */
export async function sureBackupScheduledJobs(repo: string, scheduled: boolean, onProblem: (name: string, err: unknown) => void): Promise<ScheduledJob[]> {
  const out: ScheduledJob[] = [];
  let names: string[];
  try {
    names = await listSureBackupJobNames(repo);
  } catch (err) {
    onProblem('*', err);
    return out;
  }
  for (const name of names) {
    try {
      const job = await loadSureBackupJob(repo, name);
      out.push({
        key: runtimeKey('surebackup', repo, name),
        schedule: scheduled ? job.schedule : undefined,
        window: job.window,
        retries: job.retries ?? SUREBACKUP_DEFAULT_RETRIES,
        retryDelay: job.retryDelay,
        after: job.after === undefined || !scheduled ? undefined : runtimeKey('backup', repo, job.after),
        disabled: job.disabled,
        tasks: job.vms.length,
      });
    } catch (err) {
      onProblem(name, err);
    }
  }
  return out;
}
