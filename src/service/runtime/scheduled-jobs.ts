import { Repository, loadJob } from '../../repository/index.js';
import type { ScheduledJob } from '../../schedule/index.js';
import type { Logger } from '../../core/log.js';
import { copyScheduledJobs, tierScheduledJobs } from './copy-schedule.js';
import { runtimeKey, sureBackupScheduledJobs } from './surebackup-schedule.js';

/**
 * A repository's backup jobs as the scheduler sees them, read from job.json
 * each round (a `job set` from the CLI counts at once; showJob would scan the
 * backup files every round). All jobs at once: a run asked for waits for the
 * round. A run takes a task of the cap per disk.
 */
export async function backupScheduledJobs(
  repo: string,
  scheduled: boolean,
  problems: { list(err: unknown): void; job(name: string, err: unknown): void },
): Promise<ScheduledJob[]> {
  let names: string[];
  let opened: Repository;
  try {
    opened = await Repository.open(repo);
    names = await opened.listJobs();
  } catch (err) {
    problems.list(err);
    return [];
  }
  const loaded = await Promise.all(
    names.map((name) =>
      loadJob(opened, name).then(
        (job) => ({ name, job }),
        (err: unknown) => ({ name, err }),
      ),
    ),
  );
  const out: ScheduledJob[] = [];
  for (const l of loaded) {
    if ('err' in l) {
      problems.job(l.name, l.err);
      continue;
    }
    const { name, job } = l;
    out.push({
      key: runtimeKey('backup', repo, name),
      schedule: scheduled ? job.schedule : undefined,
      window: job.window,
      retries: job.retries,
      retryDelay: job.retryDelay,
      after: job.after === undefined || !scheduled ? undefined : runtimeKey('backup', repo, job.after),
      disabled: job.disabled,
      tasks: job.disks.length,
    });
  }
  return out;
}

/**
 * Every job of every repository the server runs, backup, SureBackup, copy and capacity tier,
 * as the scheduler sees them; a problem reading one is logged once (`once`
 * is keyed by the problem).
 */
export async function serverScheduledJobs(
  repos: readonly string[],
  scheduled: boolean,
  logger: Logger,
  once: (key: string, report: () => void) => void,
): Promise<ScheduledJob[]> {
  const out: ScheduledJob[] = [];
  for (const repo of repos) {
    out.push(
      ...(await backupScheduledJobs(repo, scheduled, {
        list: (err) => once(`${repo}\nlist`, () => logger.error('service: cannot list the jobs of a repository', { repo, problem: String(err) })),
        job: (name, err) => once(`${repo}\n${name}`, () => logger.error('service: cannot read a job', { repo, job: name, problem: String(err) })),
      })),
      ...(await sureBackupScheduledJobs(repo, scheduled, (name, err) =>
        once(`${repo}\nsurebackup\n${name}`, () => logger.error('service: cannot read a SureBackup job', { repo, surebackupJob: name, problem: String(err) })),
      )),
      ...(await copyScheduledJobs(repo, scheduled, (name, err) =>
        once(`${repo}\ncopy\n${name}`, () => logger.error('service: cannot read a copy job', { repo, copyJob: name, problem: String(err) })),
      )),
      ...(await tierScheduledJobs(repo, scheduled, (err) =>
        once(`${repo}\ntier`, () => logger.error('service: cannot read the capacity tier setting', { repo, problem: String(err) })),
      )),
    );
  }
  return out;
}
