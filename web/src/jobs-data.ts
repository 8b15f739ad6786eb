/**
 * Every job of every repository with what the dashboard and the jobs list
 * show: last run, last point, next run. GET /repositories/{repo}/jobs gives
 * them in one request per repository; for a server whose listing lacks a
 * field, jobExtras() asks the runs and points routes for that job.
 */
import { api, query, seg } from './api';
import type { JobSummary, LastPoint, LastRun, PointSummary, RepositoryUsage, RunPage } from './api-types';

export interface JobRow {
  repo: string;
  summary: JobSummary;
  lastRun: LastRun | null;
  lastPoint: LastPoint | null;
}

async function jobExtras(repo: string, s: JobSummary): Promise<JobRow> {
  const [lastRun, lastPoint] = await Promise.all([
    s.lastRun !== undefined
      ? s.lastRun
      : api.get<RunPage>(`/runs${query({ repo, job: s.job.name, limit: 1 })}`).then((p) => {
          const r = p.runs[0];
          return r ? { id: r.id, state: r.state, endedAt: r.endedAt, errorCode: r.errorCode } : null;
        }),
    s.lastPoint !== undefined
      ? s.lastPoint
      : api.get<{ points: PointSummary[] }>(`/repositories/${seg(repo)}/jobs/${seg(s.job.name)}/points`).then((p) => {
          const ok = p.points.filter((x) => x.health !== 'unavailable');
          const last = ok.at(-1);
          return last ? { id: last.id, createdAt: last.createdAt } : null;
        }),
  ]);
  return { repo, summary: s, lastRun, lastPoint };
}

export async function loadRepositories(): Promise<RepositoryUsage[]> {
  return (await api.get<{ repositories: RepositoryUsage[] }>('/repositories')).repositories;
}

export async function loadJobs(repos: readonly string[]): Promise<JobRow[]> {
  const perRepo = await Promise.all(
    repos.map(async (repo) => {
      const { jobs } = await api.get<{ jobs: JobSummary[] }>(`/repositories/${seg(repo)}/jobs`);
      return Promise.all(jobs.map((j) => jobExtras(repo, j)));
    }),
  );
  return perRepo.flat();
}
