import { Repository, loadJob } from '../../repository/index.js';
import type { ScheduledJob } from '../../schedule/index.js';
import { runtimeKey } from './surebackup-schedule.js';

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
