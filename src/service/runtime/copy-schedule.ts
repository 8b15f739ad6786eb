import { listCopyJobs } from '../../methods/copy-job.js';
import { Repository, isObjectLocation, repositoryRoot } from '../../repository/index.js';
import { DEFAULT_TIER_SCHEDULE, readCapacityTier } from '../../repository/capacity-tier.js';
import { TIER_JOB } from './tier-execution.js';
import type { ScheduledJob } from '../../schedule/index.js';
import { runtimeKey } from './surebackup-schedule.js';

/** A copy's retries when it fails (the target full, a NAS gone): as a backup job's default. */
export const COPY_DEFAULT_RETRIES = 3;

/**
 * The repository's copy jobs as the scheduler sees them, read each round as
 * job.json is (a `copy create` from the CLI counts at once). Their keys start
 * with `copy:` (runtimeKey), so a copy job named as a backup job is another
 * job; `after` names a backup job of the repository. A run takes one task of
 * the cap: it reads and writes stored blocks, it opens no source.
 */
export async function copyScheduledJobs(repo: string, scheduled: boolean, onProblem: (name: string, err: unknown) => void): Promise<ScheduledJob[]> {
  let copies;
  try {
    copies = await listCopyJobs(await Repository.open(repo));
  } catch (err) {
    onProblem('*', err);
    return [];
  }
  return copies.map((c) => ({
    key: runtimeKey('copy', repo, c.name),
    schedule: scheduled ? c.schedule : undefined,
    window: c.window,
    retries: COPY_DEFAULT_RETRIES,
    after: c.after === undefined || !scheduled ? undefined : runtimeKey('backup', repo, c.after),
    tasks: 1,
  }));
}

/**
 * A repository's capacity tier as the scheduler sees it (one job, TIER_JOB,
 * key `tier:`), read each round from capacity-tier.json: none without a tier.
 * Its run takes one task of the cap.
 */
export async function tierScheduledJobs(repo: string, scheduled: boolean, onProblem: (err: unknown) => void): Promise<ScheduledJob[]> {
  if (isObjectLocation(repo)) return [];
  let tier;
  try {
    tier = await readCapacityTier(repositoryRoot(repo));
  } catch (err) {
    onProblem(err);
    return [];
  }
  if (tier === undefined) return [];
  return [
    {
      key: runtimeKey('tier', repo, TIER_JOB),
      schedule: scheduled ? (tier.schedule ?? DEFAULT_TIER_SCHEDULE) : undefined,
      retries: COPY_DEFAULT_RETRIES,
      tasks: 1,
    },
  ];
}
