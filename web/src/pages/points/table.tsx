/**
 * The same points as the timeline, as a table (newest first, a page at a
 * time): what a screen reader or a keyboard user reads, and where each
 * point's change method, problem and reason to be kept are written out.
 */
import { useState } from 'preact/hooks';
import { bytes, time } from '../../format';
import { StateBadge } from '../../ui';
import type { TestedPoint } from '../surebackup/model';
import { TestedMark } from '../surebackup/result-mark';
import { GFS_LETTER, KIND_WORDS, PLACE_WORDS, changeText, short, type Point } from './model';

const PAGE = 50;

export function PointTable({
  repo,
  job,
  points,
  kept,
  planned,
  tested,
  selected,
}: {
  repo: string;
  job: string;
  points: readonly Point[];
  kept: ReadonlyMap<string, string>;
  planned: ReadonlyMap<string, string>;
  /** Each point's newest SureBackup result, by point id. */
  tested: ReadonlyMap<string, TestedPoint>;
  selected: string | undefined;
}) {
  const [page, setPage] = useState(0);
  const newestFirst = points.length - 1;
  const pages = Math.max(1, Math.ceil(points.length / PAGE));
  const at = Math.min(page, pages - 1);
  // Only a repository with a capacity tier says where each point is.
  const tiered = points.some((p) => p.place !== undefined);
  const rows: Point[] = [];
  for (let k = at * PAGE; k < Math.min(points.length, (at + 1) * PAGE); k++) rows.push(points[newestFirst - k]!);
  return (
    <section class="point-table" aria-labelledby="point-table-title">
      <h2 id="point-table-title">Points, newest first</h2>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Point</th>
              <th scope="col">Created</th>
              <th scope="col">Kind</th>
              <th scope="col">Chain</th>
              <th scope="col">Stored</th>
              {tiered && <th scope="col">Where</th>}
              <th scope="col">GFS</th>
              <th scope="col">Health</th>
              <th scope="col">Changes found by</th>
              <th scope="col">Retention</th>
              <th scope="col">SureBackup</th>
              <th scope="col" aria-label="Actions" />
            </tr>
          </thead>
          <tbody>
            {rows.map((p) => (
              <tr
                key={p.id}
                data-point={p.id}
                class={[p.health !== 'ok' ? `row-${p.health}` : '', p.id === selected ? 'row-selected' : ''].filter(Boolean).join(' ') || undefined}
              >
                <th scope="row">
                  <code title={p.id}>{short(p.id)}</code>
                </th>
                <td>{time(p.createdAt)}</td>
                <td>{KIND_WORDS[p.kind]}</td>
                <td>
                  <code>{short(p.chainId)}</code>
                </td>
                <td>{bytes(p.storedBytes)}</td>
                {tiered && (
                  <td data-col="place" data-place={p.place ?? ''}>
                    {p.place === undefined ? '—' : PLACE_WORDS[p.place]}
                  </td>
                )}
                <td>{p.gfs.length === 0 ? '—' : <abbr title={p.gfs.join(', ')}>{p.gfs.map((g) => GFS_LETTER[g]).join(' ')}</abbr>}</td>
                <td class="wrap">
                  <StateBadge state={p.health} />
                  {p.problem && <div class="point-problem">{p.problem}</div>}
                </td>
                <td class="wrap" data-col="changes">
                  {changeText(p)}
                </td>
                <td class="wrap">{planned.get(p.id) ?? kept.get(p.id) ?? '—'}</td>
                <td data-col="surebackup">{tested.has(p.id) ? <TestedMark repo={repo} t={tested.get(p.id)!} /> : '—'}</td>
                <td>
                  {p.health === 'ok' && (
                    <a
                      href={`#/restore/${encodeURIComponent(repo)}/${encodeURIComponent(job)}/${encodeURIComponent(p.id)}`}
                      aria-label={`Restore point ${short(p.id)}`}
                    >
                      Restore…
                    </a>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {pages > 1 && (
        <nav class="pager" aria-label="Pages of points">
          <button type="button" class="btn btn-plain" disabled={at === 0} onClick={() => setPage(at - 1)}>
            Newer
          </button>
          <span>
            page {at + 1} of {pages}
          </span>
          <button type="button" class="btn btn-plain" disabled={at >= pages - 1} onClick={() => setPage(at + 1)}>
            Older
          </button>
        </nav>
      )}
    </section>
  );
}
