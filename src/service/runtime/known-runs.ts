/**
 * What the scheduler knows of runs at each round: the catalog's queued and
 * running runs, and each job's latest ended one (retries and chaining look at
 * the latest end), in the shape `decide` (src/schedule) takes.
 */
import type { Catalog, RunKind, RunRecord } from '../../catalog/catalog.js';
import type { Logger } from '../../core/log.js';
import type { KnownRun, ScheduledJob } from '../../schedule/index.js';
import { runtimeKey, splitRuntimeKey } from './surebackup-schedule.js';

const ENDED = ['succeeded', 'warning', 'failed', 'interrupted', 'stopped'] as const;

/**
 * What a server taking the scheduler finds left by the server that ran it
 * before (this one before a restart, or a leader that died): its running runs
 * become `interrupted`, with a line in their logs, and are returned for their
 * end to be reported; its queued ones too after a restart (their options were
 * in that process), not when taken over from another server (they are this
 * one's to start).
 */
export async function interruptRunsLeft(
  catalog: Catalog,
  repos: readonly string[],
  at: Date,
  keepQueued: boolean,
  logger: Logger,
): Promise<readonly RunRecord[]> {
  const left = await catalog.interruptUnfinished(at.toISOString(), repos, keepQueued);
  for (const r of left) {
    logger.warn('service: a run was interrupted by the end of the previous server', { run: r.id, job: r.job, repo: r.repo });
    await catalog
      .appendLog(r.id, [
        { at: at.toISOString(), level: 'warn', message: 'interrupted: the server ended while the run was going (it is retried per its policy)' },
      ])
      .catch(() => undefined);
  }
  return left;
}

/** A scheduler key as the catalog's repository, job and kind (undefined for a backup job). */
export const splitKey = (key: string): { repo: string; job: string; kind?: Exclude<RunKind, 'backup'> } => {
  const k = splitRuntimeKey(key);
  return { repo: k.repo, job: k.job, ...(k.kind !== 'backup' ? { kind: k.kind } : {}) };
};

/**
 * The runs of `repos` the scheduler decides with. `startedHere` says whether
 * this process started a run: such a run counts as running even before its
 * first catalog write lands, so the task cap counts it.
 */
export async function knownRuns(
  catalog: Catalog,
  repos: readonly string[],
  jobs: readonly ScheduledJob[],
  startedHere: (runId: number) => boolean,
): Promise<KnownRun[]> {
  const seen = new Map<number, RunRecord>();
  for (const repo of repos) {
    for (const r of (await catalog.listRuns({ repo, states: ['queued', 'running'], limit: 1000 })).runs) seen.set(r.id, r);
  }
  for (const j of jobs) {
    const { repo, job, kind } = splitKey(j.key);
    for (const r of (await catalog.listRuns({ repo, job, kind: kind ?? 'backup', states: ENDED, limit: 1 })).runs) seen.set(r.id, r);
  }
  const tasks = new Map(jobs.map((j) => [j.key, j.tasks]));
  const ms = (t: string | null): number | null => (t === null ? null : Date.parse(t));
  return [...seen.values()]
    .sort((a, b) => a.id - b.id)
    .map((r) => ({
      id: r.id,
      job: runtimeKey(r.kind, r.repo, r.job),
      trigger: r.trigger,
      attempt: r.attempt,
      state: startedHere(r.id) && (r.state === 'queued' || r.state === 'running') ? 'running' : r.state,
      queuedAt: Date.parse(r.queuedAt),
      startedAt: ms(r.startedAt),
      endedAt: ms(r.endedAt),
      tasks: tasks.get(runtimeKey(r.kind, r.repo, r.job)) ?? 1,
    }));
}
