/**
 * The repository's SureBackup jobs (GET …/surebackup/jobs): each job's group,
 * when it runs (schedule, after a backup job, or only when asked), its next
 * run and the result of its last run, with a link to that run's report. Jobs
 * are made with `lifeboat surebackup job create`.
 */
import { useEffect, useState } from 'preact/hooks';
import { api, seg } from '../../api';
import { time } from '../../format';
import { ErrorNote, StateBadge } from '../../ui';
import { reportHref } from './model';

export interface SureBackupJobView {
  name: string;
  vms: string[];
  everyPoint: boolean;
  schedule: string | null;
  window: string | null;
  after: string | null;
  disabled: boolean;
  nextRunAt: string | null;
  lastRun: { id: number; state: string; queuedAt: string; endedAt: string | null; reportId: string | null; errorCode: string | null } | null;
}

export const sureBackupJobsPath = (repo: string): string => `/repositories/${seg(repo)}/surebackup/jobs`;

/** When the server runs the job, in words. */
export function whenText(j: SureBackupJobView): string {
  const parts = [j.schedule !== null ? `schedule ${j.schedule}` : '', j.after !== null ? `after backup job ${j.after}` : ''].filter((p) => p !== '');
  const when = parts.length > 0 ? parts.join(', ') : 'only when asked';
  return `${when}${j.window !== null ? `, window ${j.window}` : ''}${j.disabled ? ' (disabled)' : ''}`;
}

function LastRun({ repo, run }: { repo: string; run: SureBackupJobView['lastRun'] }) {
  if (run === null) return <span class="muted">never run</span>;
  return (
    <>
      <StateBadge state={run.state} /> {time(run.endedAt ?? run.queuedAt)}
      {run.reportId !== null && (
        <>
          {' '}
          <a href={reportHref(repo, run.reportId)}>report</a>
        </>
      )}
    </>
  );
}

export function SureBackupJobs({ repo, refresh }: { repo: string; refresh: number }) {
  const [jobs, setJobs] = useState<SureBackupJobView[]>();
  const [error, setError] = useState<unknown>();

  useEffect(() => {
    let live = true;
    api.get<{ jobs: SureBackupJobView[] }>(sureBackupJobsPath(repo)).then(
      (r) => {
        if (!live) return;
        setJobs(r.jobs);
        setError(undefined);
      },
      (e: unknown) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [repo, refresh]);

  return (
    <section class="sb-jobs" aria-labelledby="sb-jobs-title" data-ready={jobs !== undefined || error !== undefined ? 'true' : undefined}>
      <h2 id="sb-jobs-title">SureBackup jobs</h2>
      <ErrorNote error={error} />
      {jobs !== undefined && jobs.length === 0 && (
        <p class="muted">
          No SureBackup job: <code>lifeboat surebackup job create &lt;name&gt; --repo … --vm &lt;job&gt; --every-point --after &lt;job&gt;</code> makes the
          server boot and test points by itself.
        </p>
      )}
      {jobs !== undefined && jobs.length > 0 && (
        <div class="table-wrap">
          <table class="sb-job-table" aria-label={`SureBackup jobs of ${repo}`}>
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">Group</th>
                <th scope="col">Runs</th>
                <th scope="col">Next run</th>
                <th scope="col">Last run</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((j) => (
                <tr key={j.name} data-sb-job={j.name} data-last-state={j.lastRun?.state}>
                  <th scope="row">{j.name}</th>
                  <td class="wrap">
                    {j.vms.join(', ')}
                    {j.everyPoint && <span class="muted"> (every point)</span>}
                  </td>
                  <td class="wrap">{whenText(j)}</td>
                  <td>{j.nextRunAt !== null ? time(j.nextRunAt) : '—'}</td>
                  <td>
                    <LastRun repo={repo} run={j.lastRun} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
