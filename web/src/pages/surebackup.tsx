/**
 * SureBackup reports of a repository, newest first (GET
 * …/surebackup/reports, a page at a time): when each run started, whether it
 * passed, and per VM whether it booted, how long that took and how many of
 * its tests passed and failed. Each row opens its report (./surebackup/report.tsx).
 */
import { useEffect, useState } from 'preact/hooks';
import { api, query } from '../api';
import { time } from '../format';
import { loadRepositories } from '../jobs-data';
import { Button, ErrorNote } from '../ui';
import { ResultMark } from './surebackup/result-mark';
import { SureBackupJobs } from './surebackup/jobs';
import { bootText, reportHref, reportsHref, reportsPath, runTime, type ReportPage, type ReportSummary } from './surebackup/model';

export { SureBackupReportPage } from './surebackup/report';

const PAGE = 50;

function ReportRow({ repo, r }: { repo: string; r: ReportSummary }) {
  return (
    <tr data-report={r.id} data-ok={String(r.ok)} class={r.ok ? undefined : 'row-failed'}>
      <th scope="row">
        <a href={reportHref(repo, r.id)} aria-label={`Report of ${time(r.startedAt)}: ${r.ok ? 'passed' : 'failed'}`}>
          {time(r.startedAt)}
        </a>
      </th>
      <td>
        <ResultMark ok={r.ok} />
      </td>
      <td class="num">{runTime(r)}</td>
      <td class="wrap">
        <ul class="sb-vm-list">
          {r.vms.map((vm, i) => (
            <li key={i} data-vm={vm.name}>
              <strong>{vm.name}</strong>: {bootText(vm)}, {vm.passed} passed,{' '}
              {vm.failed > 0 ? (
                <strong class="sb-failed-count">
                  <span aria-hidden="true">✗ </span>
                  {vm.failed} failed
                </strong>
              ) : (
                '0 failed'
              )}
            </li>
          ))}
        </ul>
      </td>
    </tr>
  );
}

/** Links to the other repositories' reports, when the server has more than one. */
function RepoSwitch({ repo, repos }: { repo: string; repos: readonly string[] }) {
  if (repos.length < 2) return null;
  return (
    <nav class="sb-repos" aria-label="Repositories">
      <ul>
        {repos.map((name) => (
          <li key={name}>
            <a href={reportsHref(name)} aria-current={name === repo ? 'page' : undefined}>
              {name}
            </a>
          </li>
        ))}
      </ul>
    </nav>
  );
}

/** The reports of `repo`; without one (the navigation's link), of the server's first repository. */
export function SureBackupPage({ repo: wanted }: { repo?: string }) {
  const [repos, setRepos] = useState<string[]>();
  const [reports, setReports] = useState<ReportSummary[]>();
  const [next, setNext] = useState<string | null>(null);
  const [more, setMore] = useState(false);
  const [error, setError] = useState<unknown>();
  const [n, setN] = useState(0);
  const repo = wanted ?? repos?.[0];

  useEffect(() => {
    loadRepositories().then((rs) => setRepos(rs.map((r) => r.name)), setError);
  }, []);

  useEffect(() => {
    if (repo === undefined) return;
    let live = true;
    api.get<ReportPage>(`${reportsPath(repo)}${query({ limit: PAGE })}`).then(
      (p) => {
        if (!live) return;
        setReports(p.reports);
        setNext(p.next);
        setError(undefined);
      },
      (e: unknown) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [repo, n]);

  const older = async (): Promise<void> => {
    if (repo === undefined || next === null) return;
    setMore(true);
    try {
      const p = await api.get<ReportPage>(`${reportsPath(repo)}${query({ limit: PAGE, before: next })}`);
      setReports((list) => [...(list ?? []), ...p.reports]);
      setNext(p.next);
    } catch (e) {
      setError(e);
    } finally {
      setMore(false);
    }
  };

  const list = reports ?? [];
  const failed = list.filter((r) => !r.ok).length;
  const ready = reports !== undefined || error !== undefined || (repos !== undefined && repos.length === 0);
  return (
    <section class="sb-page" aria-labelledby="sb-title" data-ready={ready ? 'true' : undefined}>
      <header class="page-head toolbar">
        <h1 id="sb-title">SureBackup reports{repo !== undefined && <> of {repo}</>}</h1>
        <span class="spacer" />
        <Button onClick={() => setN((x) => x + 1)}>Refresh</Button>
      </header>
      <RepoSwitch repo={repo ?? ''} repos={repos ?? []} />
      <ErrorNote error={error} />
      {repos !== undefined && repos.length === 0 && <p class="muted">The server has no repository.</p>}
      {repo !== undefined && <SureBackupJobs repo={repo} refresh={n} />}
      {reports !== undefined && list.length === 0 && (
        <p class="muted">
          No SureBackup run has reported to this server yet: <code>lifeboat surebackup run --repo …</code> boots points in an isolated lab, tests them and
          records its report here.
        </p>
      )}
      {list.length > 0 && (
        <>
          <p class="summary" data-summary>
            {list.length} report{list.length === 1 ? '' : 's'}
            {next !== null ? ' shown' : ''}
            {failed > 0 && <strong class="text-danger">, {failed} failed</strong>}
          </p>
          <div class="table-wrap">
            <table class="sb-reports" aria-label={`SureBackup reports of ${repo ?? ''}, newest first`}>
              <thead>
                <tr>
                  <th scope="col">Started</th>
                  <th scope="col">Result</th>
                  <th scope="col" class="num">
                    Took
                  </th>
                  <th scope="col">VMs</th>
                </tr>
              </thead>
              <tbody>
                {list.map((r) => (
                  <ReportRow key={r.id} repo={repo!} r={r} />
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      {next !== null && (
        <div class="pager">
          <Button busy={more} onClick={() => void older()}>
            Older reports
          </Button>
        </div>
      )}
    </section>
  );
}
