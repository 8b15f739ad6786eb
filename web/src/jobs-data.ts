/**
 * Every job of every repository with what the dashboard and the jobs list
 * show (last run, last point, next run): one GET /repositories/{repo}/jobs
 * per repository.
 */
import { api, seg } from './api';
import type { JobSummary, LastPoint, LastRun, RepositoryUsage } from './api-types';

export interface JobRow {
  repo: string;
  summary: JobSummary;
  lastRun: LastRun | null;
  lastPoint: LastPoint | null;
}

export async function loadRepositories(): Promise<RepositoryUsage[]> {
  return (await api.get<{ repositories: RepositoryUsage[] }>('/repositories')).repositories;
}

export async function loadJobs(repos: readonly string[]): Promise<JobRow[]> {
  const perRepo = await Promise.all(
    repos.map(async (repo) => {
      const { jobs } = await api.get<{ jobs: JobSummary[] }>(`/repositories/${seg(repo)}/jobs`);
      return jobs.map((s) => ({ repo, summary: s, lastRun: s.lastRun, lastPoint: s.lastPoint }));
    }),
  );
  return perRepo.flat();
}
