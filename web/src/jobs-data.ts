/**
 * Every job of every repository with what the dashboard and the jobs list
 * show (last run, last point, next run): GET /jobs, all repositories at once.
 */
import { api } from './api';
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

/** Every job of every repository in one request (GET /jobs), so a page need not wait for the repositories first. */
export async function loadJobs(): Promise<JobRow[]> {
  const { jobs } = await api.get<{ jobs: JobSummary[] }>('/jobs');
  return jobs.map((s) => ({ repo: s.repo, summary: s, lastRun: s.lastRun, lastPoint: s.lastPoint }));
}
