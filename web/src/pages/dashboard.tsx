import type { ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, query, seg } from '../api';
import type { RepositoryUsage, Run, RunPage, UsageSample } from '../api-types';
import { age, bytes, percent } from '../format';
import { type JobRow, loadJobs, loadRepositories } from '../jobs-data';
import { href } from '../routes';
import { overallFraction, useRunEvents } from '../run-events';
import { ErrorNote, ProgressBar, StateBadge } from '../ui';
import { JobTable } from './jobs';
import { overlayNearFull, type Session } from './sessions/model';
import { reportHref, reportsPath, type ReportPage, type ReportSummary } from './surebackup/model';

const DAY_MS = 24 * 3600 * 1000;
/** A repository whose file system has less than this share free is near full. */
const NEAR_FULL = 0.1;
/** How often the dashboard asks for runs that started since (their progress then comes live). */
const RUNNING_POLL_MS = 3000;

interface Alert {
  key: string;
  bad: boolean;
  text: string;
  link?: string;
}

/**
 * What needs a look: failed or warning runs, damaged points, jobs without a
 * point in 24 h, repositories and instant-recovery overlays near full, and
 * repositories whose newest SureBackup report failed.
 */
export function alertsOf(
  rows: readonly JobRow[],
  repos: readonly RepositoryUsage[],
  sessions: readonly Session[] = [],
  newestReports: readonly ReportSummary[] = [],
  now = Date.now(),
): Alert[] {
  const out: Alert[] = [];
  for (const r of rows) {
    const name = `${r.repo}/${r.summary.job.name}`;
    const job = href('jobs', r.repo, r.summary.job.name);
    if (r.lastRun?.state === 'failed')
      out.push({
        key: `f-${name}`,
        bad: true,
        text: `${name}: last run failed${r.lastRun.errorCode ? ` (${r.lastRun.errorCode})` : ''}`,
        link: href('runs', r.lastRun.id),
      });
    else if (r.lastRun?.state === 'warning')
      out.push({ key: `w-${name}`, bad: false, text: `${name}: last run ended with a warning`, link: href('runs', r.lastRun.id) });
    const damaged = r.summary.damagedPoints + r.summary.damagedFiles;
    if (damaged > 0)
      out.push({
        key: `d-${name}`,
        bad: true,
        text: `${name}: ${damaged} damaged point${damaged === 1 ? '' : 's'} or file${damaged === 1 ? '' : 's'}`,
        link: href('jobs', r.repo, r.summary.job.name, 'points'),
      });
    if (!r.summary.job.disabled && (r.lastPoint === null || now - Date.parse(r.lastPoint.createdAt) > DAY_MS))
      out.push({
        key: `p-${name}`,
        bad: false,
        text: r.lastPoint ? `${name}: no point in 24 h (last ${age(r.lastPoint.createdAt, now)})` : `${name}: no restore point yet`,
        link: job,
      });
  }
  for (const repo of repos)
    if (repo.totalBytes > 0 && repo.freeBytes / repo.totalBytes < NEAR_FULL)
      out.push({ key: `r-${repo.name}`, bad: true, text: `repository ${repo.name} is near full: ${bytes(repo.freeBytes)} free of ${bytes(repo.totalBytes)}` });
  for (const session of sessions)
    if (overlayNearFull(session))
      out.push({
        key: `o-${session.repo}/${session.name}`,
        bad: true,
        text: `instant-recovery session ${session.name}: its overlays' file system is near full (${bytes(session.overlayFreeBytes ?? 0)} free of ${bytes(session.overlayTotalBytes ?? 0)}); writes fail when it is full`,
        link: href('sessions'),
      });
  for (const r of newestReports)
    if (!r.ok) {
      const vms = r.vms.filter((vm) => !vm.booted || vm.failed > 0).map((vm) => vm.name);
      out.push({
        key: `s-${r.repo}`,
        bad: true,
        text: `repository ${r.repo}: the newest SureBackup run failed (${age(r.startedAt, now)}${vms.length > 0 ? `; ${vms.join(', ')}` : ''})`,
        link: reportHref(r.repo, r.id),
      });
    }
  return out;
}

/** Each repository's newest SureBackup report (none for a repository that has none). */
async function newestReports(repos: readonly RepositoryUsage[]): Promise<ReportSummary[]> {
  const pages = await Promise.all(repos.map((r) => api.get<ReportPage>(`${reportsPath(r.name)}${query({ limit: 1 })}`)));
  return pages.flatMap((p) => p.reports.slice(0, 1));
}

/** How far back the capacity chart goes. */
const CAPACITY_DAYS = 30;

/**
 * The capacity chart's data: the samples the server took of the
 * repository's usage over the last 30 days (GET /repositories/{repo}/usage),
 * ending with the usage now.
 */
async function capacitySamples(repo: RepositoryUsage): Promise<UsageSample[]> {
  const since = new Date(Date.now() - CAPACITY_DAYS * DAY_MS).toISOString();
  const { samples } = await api.get<{ samples: UsageSample[] }>(`/repositories/${seg(repo.name)}/usage${query({ since })}`);
  return [...samples, { at: new Date().toISOString(), bytes: repo.bytes, freeBytes: repo.freeBytes, totalBytes: repo.totalBytes }];
}

function RunningRow({ run }: { run: Run }) {
  const live = useRunEvents(run.id, true);
  const current = live.run ?? run;
  const fraction = overallFraction(live.progress, current);
  return (
    <tr>
      <td>
        <a href={href('runs', run.id)}>#{run.id}</a>
      </td>
      <td>
        {run.repoName}/{run.job}
        {run.kind === 'surebackup' && <small class="muted"> SureBackup</small>}
        {run.kind === 'copy' && <small class="muted"> copy</small>}
        {run.kind === 'tier' && <small class="muted"> capacity tier</small>}
      </td>
      <td>
        <StateBadge state={current.state} />
      </td>
      <td class="progress-cell">
        <ProgressBar label={`Run ${run.id} of ${run.repoName}/${run.job}`} value={Math.round(fraction * 1000)} max={1000} />
      </td>
    </tr>
  );
}

function Running() {
  const [runs, setRuns] = useState<Run[]>([]);
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let live = true;
    const poll = (): void => {
      api.get<RunPage>(`/runs${query({ state: ['running', 'queued'], limit: 50 })}`).then(
        (p) => {
          if (!live) return;
          setRuns(p.runs);
          setError(undefined);
          timer = setTimeout(poll, RUNNING_POLL_MS);
        },
        (e: unknown) => live && setError(e),
      );
    };
    poll();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, []);
  return (
    <section class="card" aria-labelledby="running-title">
      <h2 id="running-title">Running</h2>
      <ErrorNote error={error} />
      {runs.length === 0 ? (
        <p class="muted">Nothing is running.</p>
      ) : (
        <div class="table-wrap">
          <table aria-label="Running and queued runs">
            <thead>
              <tr>
                <th>run</th>
                <th>job</th>
                <th>state</th>
                <th>progress</th>
              </tr>
            </thead>
            <tbody>
              {runs.map((r) => (
                <RunningRow key={r.id} run={r} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

type Chart = ComponentType<{ samples: UsageSample[]; label: string }>;

function Capacity({ repo }: { repo: RepositoryUsage }) {
  const [chart, setChart] = useState<Chart>();
  const [samples, setSamples] = useState<UsageSample[]>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    // uPlot is loaded here only: the login page and the other pages do without it.
    import('./capacity-chart').then((m) => setChart(() => m.CapacityChart), setError);
    capacitySamples(repo).then(setSamples, setError);
  }, [repo]);
  const Chart = chart;
  return (
    <section class="card" aria-labelledby={`cap-${repo.name}`}>
      <h2 id={`cap-${repo.name}`}>Repository {repo.name}</h2>
      <dl class="stats">
        <div>
          <dt>backup files</dt>
          <dd>{bytes(repo.bytes)}</dd>
        </div>
        {repo.capacityBytes !== undefined && (
          <div data-stat="capacity-tier">
            <dt>on the capacity tier</dt>
            <dd>{bytes(repo.capacityBytes)}</dd>
          </div>
        )}
        <div>
          <dt>free</dt>
          <dd>
            {bytes(repo.freeBytes)} ({percent(repo.freeBytes, repo.totalBytes)})
          </dd>
        </div>
        <div>
          <dt>file system</dt>
          <dd>{bytes(repo.totalBytes)}</dd>
        </div>
      </dl>
      <ErrorNote error={error} />
      {Chart && samples && <Chart samples={samples} label={`Capacity of repository ${repo.name} over time`} />}
    </section>
  );
}

/** At a glance: every job's last result, what needs a look, what runs now, how full the repositories are. */
export function DashboardPage() {
  const [repos, setRepos] = useState<RepositoryUsage[]>();
  const [rows, setRows] = useState<JobRow[]>();
  const [sessions, setSessions] = useState<Session[]>([]);
  const [reports, setReports] = useState<ReportSummary[]>([]);
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    // The jobs, the repositories and the sessions are asked for at once: the job table does not wait for the others.
    loadJobs().then(setRows, setError);
    loadRepositories().then((rs) => {
      setRepos(rs);
      newestReports(rs).then(setReports, setError);
    }, setError);
    api.get<{ sessions: Session[] }>('/sessions').then((r) => setSessions(r.sessions), setError);
  }, []);
  const alerts = rows && repos ? alertsOf(rows, repos, sessions, reports) : [];
  return (
    <>
      <h1>Dashboard</h1>
      <ErrorNote error={error} />
      <section class="card" aria-labelledby="alerts-title">
        <h2 id="alerts-title">Alerts</h2>
        {rows === undefined || repos === undefined ? (
          <p aria-busy="true">Loading…</p>
        ) : alerts.length === 0 ? (
          <p class="muted">Nothing needs a look.</p>
        ) : (
          <ul class="alerts">
            {alerts.map((a) => (
              <li key={a.key} class={a.bad ? 'alert-bad' : undefined}>
                {a.link ? <a href={a.link}>{a.text}</a> : a.text}
              </li>
            ))}
          </ul>
        )}
      </section>
      <Running />
      <section aria-labelledby="dash-jobs">
        <h2 id="dash-jobs">Jobs</h2>
        {rows !== undefined && (rows.length === 0 ? <p class="muted">No jobs yet.</p> : <JobTable rows={rows} />)}
      </section>
      <div class="grid">
        {repos?.map((r) => (
          <Capacity key={r.name} repo={r} />
        ))}
      </div>
    </>
  );
}
