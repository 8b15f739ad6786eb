/**
 * A repository's backup copy jobs (GET …/copies): the job each copies, the
 * target repository, when the server runs it (schedule, after a backup job,
 * or only when asked), its next run and its last run linked to that run's
 * page, and "Run now" (POST …/copies/{name}/run, operators). Copy jobs are
 * made with `lifeboat copy create`. Below them, the repository's capacity
 * tier (capacity-tier.tsx).
 */
import { useEffect, useState } from 'preact/hooks';
import { api, seg } from '../api';
import { bytes, time } from '../format';
import { loadRepositories } from '../jobs-data';
import { href } from '../routes';
import { Button, ErrorNote, StateBadge, useAction } from '../ui';
import { CapacityTierPanel } from './capacity-tier';

export interface CopyJobView {
  name: string;
  job: string;
  toRepo: string;
  schedule: string | null;
  window: string | null;
  after: string | null;
  nextRunAt: string | null;
  lastRun: {
    id: number;
    state: string;
    queuedAt: string;
    endedAt: string | null;
    bytesStored: number;
    pointId: string | null;
    errorCode: string | null;
  } | null;
}

const copiesPath = (repo: string): string => `/repositories/${seg(repo)}/copies`;

function whenText(c: CopyJobView): string {
  const parts = [c.schedule !== null ? `schedule ${c.schedule}` : '', c.after !== null ? `after backup job ${c.after}` : ''].filter((p) => p !== '');
  return `${parts.length > 0 ? parts.join(', ') : 'only when asked'}${c.window !== null ? `, window ${c.window}` : ''}`;
}

function LastRun({ run }: { run: CopyJobView['lastRun'] }) {
  if (run === null) return <span class="muted">never run here</span>;
  return (
    <a href={href('runs', run.id)} aria-label={`Run ${run.id}: ${run.state}`} data-last-run={run.id}>
      <StateBadge state={run.state} /> {time(run.endedAt ?? run.queuedAt)}
      {run.state === 'succeeded' && <span class="muted"> {bytes(run.bytesStored)} copied</span>}
      {run.errorCode !== null && <span class="muted"> {run.errorCode}</span>}
    </a>
  );
}

function RunNow({ repo, name }: { repo: string; name: string }) {
  const action = useAction();
  return (
    <>
      <Button
        mutating
        busy={action.busy}
        aria-label={`Run copy job ${name} now`}
        onClick={() =>
          void action.run(async () => {
            const run = await api.post<{ id: number }>(`${copiesPath(repo)}/${seg(name)}/run`);
            location.hash = href('runs', run.id);
          })
        }
      >
        Run now
      </Button>
      <ErrorNote error={action.error} />
    </>
  );
}

/** The copy jobs of `repo`; without one (the navigation's link), of the server's first repository. */
export function CopiesPage({ repo: wanted }: { repo?: string }) {
  const [repos, setRepos] = useState<string[]>();
  const [copies, setCopies] = useState<CopyJobView[]>();
  const [error, setError] = useState<unknown>();
  const [n, setN] = useState(0);
  const repo = wanted ?? repos?.[0];

  useEffect(() => {
    loadRepositories().then((rs) => setRepos(rs.map((r) => r.name)), setError);
  }, []);

  useEffect(() => {
    if (repo === undefined) return;
    let live = true;
    api.get<{ copies: CopyJobView[] }>(copiesPath(repo)).then(
      (r) => {
        if (!live) return;
        setCopies(r.copies);
        setError(undefined);
      },
      (e: unknown) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [repo, n]);

  const ready = copies !== undefined || error !== undefined || (repos !== undefined && repos.length === 0);
  return (
    <section class="copies-page" aria-labelledby="copies-title" data-ready={ready ? 'true' : undefined}>
      <header class="page-head toolbar">
        <h1 id="copies-title">Backup copies{repo !== undefined && <> of {repo}</>}</h1>
        <span class="spacer" />
        <Button onClick={() => setN((x) => x + 1)}>Refresh</Button>
      </header>
      {repos !== undefined && repos.length > 1 && (
        <nav class="sb-repos" aria-label="Repositories">
          <ul>
            {repos.map((name) => (
              <li key={name}>
                <a href={href('copies', name)} aria-current={name === repo ? 'page' : undefined}>
                  {name}
                </a>
              </li>
            ))}
          </ul>
        </nav>
      )}
      <ErrorNote error={error} />
      {repos !== undefined && repos.length === 0 && <p class="muted">The server has no repository.</p>}
      {copies !== undefined && copies.length === 0 && (
        <p class="muted">
          No copy job: <code>lifeboat copy create &lt;name&gt; --repo … --to-repo &lt;dir&gt; --job &lt;job&gt; --after &lt;job&gt;</code> makes the server copy
          each new point of the job to a second repository.
        </p>
      )}
      {copies !== undefined && copies.length > 0 && (
        <div class="table-wrap">
          <table aria-label={`Copy jobs of ${repo ?? ''}`}>
            <thead>
              <tr>
                <th scope="col">Copy job</th>
                <th scope="col">Job</th>
                <th scope="col">Target</th>
                <th scope="col">Runs</th>
                <th scope="col">Next run</th>
                <th scope="col">Last run</th>
                <th scope="col">Copy</th>
              </tr>
            </thead>
            <tbody>
              {copies.map((c) => (
                <tr key={c.name} data-copy={c.name} data-last-state={c.lastRun?.state}>
                  <th scope="row">{c.name}</th>
                  <td>
                    <a href={href('jobs', repo!, c.job)}>{c.job}</a>
                  </td>
                  <td class="wrap">
                    <code>{c.toRepo}</code>
                  </td>
                  <td class="wrap">{whenText(c)}</td>
                  <td>{c.nextRunAt !== null ? time(c.nextRunAt) : '—'}</td>
                  <td>
                    <LastRun run={c.lastRun} />
                  </td>
                  <td>
                    <RunNow repo={repo!} name={c.name} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {repo !== undefined && <CapacityTierPanel key={`${repo}-${n}`} repo={repo} />}
    </section>
  );
}
