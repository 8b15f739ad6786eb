import { useEffect, useState } from 'preact/hooks';
import { api, query, seg } from '../api';
import type { JobSummary, RunPage } from '../api-types';
import { age, bytes, duration, time } from '../format';
import { type JobRow, loadJobs } from '../jobs-data';
import { href } from '../routes';
import { Button, ErrorNote, StateBadge, useApi } from '../ui';

/** Every job of every repository, with its last result and next run. */
export function JobsPage() {
  const [rows, setRows] = useState<JobRow[] | undefined>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    loadJobs().then(setRows, setError);
  }, []);
  return (
    <section aria-labelledby="jobs-title">
      <div class="toolbar">
        <h1 id="jobs-title">Jobs</h1>
        <span class="spacer" />
        <Button mutating="admin" kind="primary" onClick={() => (location.hash = '#/jobs/new')}>
          New job
        </Button>
      </div>
      <ErrorNote error={error} />
      {rows === undefined && !error && <p aria-busy="true">Loading jobs…</p>}
      {rows !== undefined && rows.length === 0 && <p class="muted">No jobs yet.</p>}
      {rows !== undefined && rows.length > 0 && <JobTable rows={rows} />}
    </section>
  );
}

export function JobTable({ rows }: { rows: JobRow[] }) {
  return (
    <div class="card table-wrap">
      <table aria-label="Jobs">
        <thead>
          <tr>
            <th>job</th>
            <th>last result</th>
            <th>last point</th>
            <th>next run</th>
            <th class="num">points</th>
            <th class="num">stored</th>
            <th>schedule</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={`${r.repo}/${r.summary.job.name}`}>
              <td>
                <a href={href('jobs', r.repo, r.summary.job.name)}>
                  {r.repo}/{r.summary.job.name}
                </a>
                {r.summary.job.disabled && <small class="muted"> (disabled)</small>}
              </td>
              <td>{r.lastRun ? <a href={href('runs', r.lastRun.id)}>{<StateBadge state={r.lastRun.state} />}</a> : <span class="muted">never run</span>}</td>
              <td title={r.lastPoint ? time(r.lastPoint.createdAt) : undefined}>{r.lastPoint ? age(r.lastPoint.createdAt) : '—'}</td>
              <td title={r.summary.nextRunAt ? time(r.summary.nextRunAt) : undefined}>{r.summary.nextRunAt ? age(r.summary.nextRunAt) : '—'}</td>
              <td class="num">
                {r.summary.points}
                {r.summary.damagedPoints > 0 && <small class="badge badge-damaged"> {r.summary.damagedPoints} damaged</small>}
              </td>
              <td class="num">{bytes(r.summary.storedBytes)}</td>
              <td>
                <code>{r.summary.job.schedule ?? '—'}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const PAGE = 20;

/** A job's runs, newest first, a page at a time (the API's `next` is the `before` of the next page). */
function History({ repo, job, reloadKey }: { repo: string; job: string; reloadKey: number }) {
  const [pages, setPages] = useState<(number | undefined)[]>([undefined]);
  const before = pages.at(-1);
  // Backup runs only: a SureBackup job of the same name has runs of its own (on the SureBackup page).
  const page = useApi<RunPage>(`/runs${query({ repo, job, kind: 'backup', limit: PAGE, before })}`);
  const { reload } = page;
  useEffect(() => {
    if (reloadKey > 0) reload();
  }, [reloadKey, reload]);
  return (
    <>
      <ErrorNote error={page.error} />
      {page.data && page.data.runs.length === 0 && <p class="muted">No runs yet.</p>}
      {page.data && page.data.runs.length > 0 && (
        <div class="card table-wrap">
          <table aria-label="Runs of the job">
            <thead>
              <tr>
                <th>run</th>
                <th>result</th>
                <th>trigger</th>
                <th>queued</th>
                <th class="num">took</th>
                <th class="num">read</th>
                <th class="num">stored</th>
                <th>change method</th>
              </tr>
            </thead>
            <tbody>
              {page.data.runs.map((r) => (
                <tr key={r.id}>
                  <td>
                    <a href={href('runs', r.id)}>#{r.id}</a>
                  </td>
                  <td>
                    <StateBadge state={r.state} />
                    {r.errorCode && <small class="muted"> {r.errorCode}</small>}
                  </td>
                  <td>{r.trigger}</td>
                  <td title={time(r.queuedAt)}>{age(r.queuedAt)}</td>
                  <td class="num">{r.startedAt && r.endedAt ? duration(Date.parse(r.endedAt) - Date.parse(r.startedAt)) : '—'}</td>
                  <td class="num">{bytes(r.bytesRead)}</td>
                  <td class="num">{bytes(r.bytesStored)}</td>
                  <td>{r.changeMethod ?? '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav class="pager" aria-label="Run history pages">
        <button type="button" class="btn btn-small" disabled={pages.length <= 1} onClick={() => setPages((p) => p.slice(0, -1))}>
          Newer
        </button>
        <button
          type="button"
          class="btn btn-small"
          disabled={!page.data || page.data.next === null}
          onClick={() => page.data?.next != null && setPages((p) => [...p, page.data!.next!])}
        >
          Older
        </button>
      </nav>
    </>
  );
}

function Settings({ s }: { s: JobSummary }) {
  const j = s.job;
  const rows: [string, string][] = [
    ['disks', j.disks.join(', ') || '—'],
    ['method', j.method],
    ['schedule', j.schedule ?? '—'],
    ['window', j.window ?? '—'],
    ['retention', j.retainDays !== undefined ? `${j.retainDays} days` : `${j.retainPoints} points`],
    ['GFS', j.gfs ? `${j.gfs.weekly} weekly, ${j.gfs.monthly} monthly, ${j.gfs.yearly} yearly` : '—'],
    ['changed-block tracking', j.cbt ? 'on' : 'off'],
    ['active full days', j.activeFullDays.join(', ') || '—'],
    ['synthetic full days', j.syntheticFullDays?.join(', ') || '—'],
    ['retries', j.retries !== undefined ? `${j.retries}${j.retryDelay ? `, ${j.retryDelay} apart` : ''}` : '—'],
    ['after', j.after ?? '—'],
    ['state', j.disabled ? 'disabled' : 'enabled'],
  ];
  return (
    <dl class="stats">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

/** One job: its settings, run now, stop, edit, and its history. */
export function JobPage({ repo, job }: { repo: string; job: string }) {
  const path = `/repositories/${seg(repo)}/jobs/${seg(job)}`;
  const loaded = useApi<JobSummary>(path);
  const [actionError, setActionError] = useState<unknown>();
  const [note, setNote] = useState<string>();
  const [busy, setBusy] = useState<'run' | 'stop' | undefined>();
  const [reloadKey, setReloadKey] = useState(0);

  const runNow = async (): Promise<void> => {
    setBusy('run');
    setActionError(undefined);
    try {
      const run = await api.post<{ id: number }>(`${path}/run`);
      location.hash = href('runs', run.id);
    } catch (err) {
      setActionError(err);
    } finally {
      setBusy(undefined);
    }
  };
  const stop = async (): Promise<void> => {
    setBusy('stop');
    setActionError(undefined);
    try {
      const r = await api.post<{ stopped: number[] }>(`${path}/stop`);
      setNote(r.stopped.length === 0 ? 'Nothing was running.' : `Stopped run ${r.stopped.join(', ')}.`);
      setReloadKey((n) => n + 1);
    } catch (err) {
      setActionError(err);
    } finally {
      setBusy(undefined);
    }
  };

  return (
    <section aria-labelledby="job-title">
      <div class="toolbar">
        <h1 id="job-title">
          {repo}/{job}
        </h1>
        <span class="spacer" />
        <a href={href('jobs', repo, job, 'points')}>Restore points</a>
        <Button mutating kind="primary" busy={busy === 'run'} onClick={() => void runNow()}>
          Run now
        </Button>
        <Button mutating kind="danger" busy={busy === 'stop'} onClick={() => void stop()}>
          Stop
        </Button>
        <Button mutating="admin" onClick={() => (location.hash = href('jobs', repo, job, 'edit'))}>
          Edit
        </Button>
      </div>
      <ErrorNote error={actionError ?? loaded.error} />
      {note && (
        <p role="status" class="muted">
          {note}
        </p>
      )}
      {loaded.data && (
        <div class="card">
          <dl class="stats">
            <div>
              <dt>points</dt>
              <dd>{loaded.data.points}</dd>
            </div>
            <div>
              <dt>next run</dt>
              <dd title={time(loaded.data.nextRunAt)}>{loaded.data.nextRunAt ? age(loaded.data.nextRunAt) : '—'}</dd>
            </div>
            <div>
              <dt>damaged files</dt>
              <dd>{loaded.data.damagedFiles}</dd>
            </div>
          </dl>
          <h2>Settings</h2>
          <Settings s={loaded.data} />
        </div>
      )}
      <h2>History</h2>
      <History repo={repo} job={job} reloadKey={reloadKey} />
    </section>
  );
}
