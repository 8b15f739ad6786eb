/**
 * A repository's capacity tier (GET …/tier): its extent, what it moves and
 * copies, when the server runs it, its next and last run, where each job's
 * backup files are (local, capacity or both), and "Run now" (POST …/tier/run,
 * operators). A repository without one shows how to give it one (`lifeboat
 * tier set`). Shown on the Copies page: both are where backups go beyond the
 * repository's own disks.
 */
import { useEffect, useState } from 'preact/hooks';
import { api, seg } from '../api';
import { bytes, time } from '../format';
import { href } from '../routes';
import { Button, ErrorNote, StateBadge, useAction } from '../ui';

type Place = 'local' | 'capacity' | 'both';

export interface CapacityTierView {
  capacity: string;
  moveAfterDays: number | null;
  copyNew: boolean;
  schedule: string;
  nextRunAt: string | null;
  lastRun: { id: number; state: string; queuedAt: string; endedAt: string | null; bytesStored: number; errorCode: string | null } | null;
  jobs: { job: string; files: { file: string; bytes: number; place: Place; stale: boolean; points: string[] }[] }[];
}

const PLACES: readonly Place[] = ['local', 'both', 'capacity'];

function modeText(t: CapacityTierView): string {
  const parts = [
    t.moveAfterDays !== null ? `moves chains ${t.moveAfterDays} day${t.moveAfterDays === 1 ? '' : 's'} old and sealed GFS fulls` : '',
    t.copyNew ? 'copies every new backup file' : '',
  ];
  return parts.filter((p) => p !== '').join('; ');
}

export function CapacityTierPanel({ repo }: { repo: string }) {
  const [tier, setTier] = useState<CapacityTierView | null>();
  const [error, setError] = useState<unknown>();
  const [n, setN] = useState(0);
  const action = useAction();
  const path = `/repositories/${seg(repo)}/tier`;

  useEffect(() => {
    let live = true;
    api.get<{ tier: CapacityTierView | null }>(path).then(
      (r) => {
        if (!live) return;
        setTier(r.tier);
        setError(undefined);
      },
      (e: unknown) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [path, n]);

  const ready = tier !== undefined || error !== undefined;
  return (
    <section
      class="tier-panel"
      aria-labelledby="tier-title"
      data-ready={ready ? 'true' : undefined}
      data-tier={tier ? 'yes' : tier === null ? 'none' : undefined}
    >
      <header class="toolbar">
        <h2 id="tier-title">Capacity tier</h2>
        <span class="spacer" />
        {tier && (
          <Button
            mutating
            busy={action.busy}
            aria-label="Run the capacity tier now"
            onClick={() =>
              void action.run(async () => {
                const run = await api.post<{ id: number }>(`${path}/run`);
                location.hash = href('runs', run.id);
              })
            }
          >
            Run now
          </Button>
        )}
        <Button onClick={() => setN((x) => x + 1)}>Refresh</Button>
      </header>
      <ErrorNote error={error ?? action.error} />
      {tier === null && (
        <p class="muted">
          No capacity tier: <code>lifeboat tier set --repo … --capacity s3://bucket/prefix --move-after-days 30</code> moves old chains to object storage;
          restores and instant recovery read them from there.
        </p>
      )}
      {tier && (
        <>
          <dl class="stats">
            <div>
              <dt>extent</dt>
              <dd>
                <code>{tier.capacity}</code>
              </dd>
            </div>
            <div>
              <dt>does</dt>
              <dd>{modeText(tier)}</dd>
            </div>
            <div>
              <dt>schedule</dt>
              <dd>
                <code>{tier.schedule}</code>, next {tier.nextRunAt !== null ? time(tier.nextRunAt) : '—'}
              </dd>
            </div>
            <div>
              <dt>last run</dt>
              <dd>
                {tier.lastRun === null ? (
                  <span class="muted">never run here</span>
                ) : (
                  <a href={href('runs', tier.lastRun.id)} data-last-run={tier.lastRun.id}>
                    <StateBadge state={tier.lastRun.state} /> {time(tier.lastRun.endedAt ?? tier.lastRun.queuedAt)}
                    {tier.lastRun.errorCode !== null && <span class="muted"> {tier.lastRun.errorCode}</span>}
                  </a>
                )}
              </dd>
            </div>
          </dl>
          <div class="table-wrap">
            <table aria-label={`Backup files of ${repo} by place`}>
              <thead>
                <tr>
                  <th scope="col">Job</th>
                  <th scope="col">File</th>
                  <th scope="col">Points</th>
                  <th scope="col">Size</th>
                  <th scope="col">Where</th>
                </tr>
              </thead>
              <tbody>
                {tier.jobs.flatMap((j) =>
                  [...j.files]
                    .sort((a, b) => PLACES.indexOf(b.place) - PLACES.indexOf(a.place) || a.file.localeCompare(b.file))
                    .map((f) => (
                      <tr key={`${j.job}/${f.file}`} data-file={f.file} data-place={f.place}>
                        <td>
                          <a href={href('jobs', repo, j.job)}>{j.job}</a>
                        </td>
                        <td class="wrap">
                          <code>{f.file}</code>
                        </td>
                        <td>{f.points.join(', ')}</td>
                        <td>{bytes(f.bytes)}</td>
                        <td>
                          {f.place}
                          {f.stale && <span class="muted"> (copied again at the next run)</span>}
                        </td>
                      </tr>
                    )),
                )}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
