/**
 * A job's restore points: the timeline of its chains, the card of the point
 * hovered or selected, the retention plan beside them, and the table that
 * says all of it in words. The page reads two routes, both GET:
 * …/jobs/{job}/points and …/jobs/{job}/retention-plan.
 */
import { useCallback, useEffect, useMemo, useState } from 'preact/hooks';
import { api, seg } from '../api';
import { bytes, time } from '../format';
import { ErrorNote, StateBadge } from '../ui';
import {
  changeText,
  chainSpans,
  describe,
  GFS_LETTER,
  KIND_WORDS,
  PLACE_WORDS,
  plannedFor,
  short,
  type Point,
  type PointList,
  type RetentionPlan,
} from './points/model';
import { PlanPanel } from './points/plan';
import { PointTable } from './points/table';
import { Legend, Timeline } from './points/timeline';
import { testedPointsPath, type TestedPoint } from './surebackup/model';
import { TestedMark } from './surebackup/result-mark';

const restoreHref = (repo: string, job: string, id: string): string => `#/restore/${seg(repo)}/${seg(job)}/${seg(id)}`;
const filesHref = (repo: string, job: string, id: string): string => `#/files/${seg(repo)}/${seg(job)}/${seg(id)}`;

function PointCard({ repo, job, p, why, tested }: { repo: string; job: string; p: Point; why: string | undefined; tested: TestedPoint | undefined }) {
  return (
    <div class={`point-card point-card-${p.health}`} aria-live="polite" data-point={p.id}>
      <h3>
        {KIND_WORDS[p.kind]} <code title={p.id}>{short(p.id)}</code> <StateBadge state={p.health} />
      </h3>
      <dl>
        <dt>Created</dt>
        <dd>{time(p.createdAt)}</dd>
        <dt>Chain</dt>
        <dd>
          <code>{short(p.chainId)}</code>
        </dd>
        <dt>Stored</dt>
        <dd>
          {bytes(p.storedBytes)} of {bytes(p.diskBytes)} on {p.diskSizes.length} disk{p.diskSizes.length === 1 ? '' : 's'}
        </dd>
        <dt>Changes found by</dt>
        <dd data-change-method={p.changeMethod ?? ''}>{changeText(p)}</dd>
        {p.place !== undefined && (
          <>
            <dt>Where</dt>
            <dd data-place={p.place}>{PLACE_WORDS[p.place]}</dd>
          </>
        )}
        {p.gfs.length > 0 && (
          <>
            <dt>GFS</dt>
            <dd>{p.gfs.map((g) => `${GFS_LETTER[g]} (${g})`).join(', ')}</dd>
          </>
        )}
        {p.problem && (
          <>
            <dt>Problem</dt>
            <dd class="point-problem">
              {p.problem} {p.problemCode && <code>{p.problemCode}</code>}
            </dd>
          </>
        )}
        {tested && (
          <>
            <dt>SureBackup</dt>
            <dd>
              <TestedMark repo={repo} t={tested} /> {time(tested.lastTestedAt)}
            </dd>
          </>
        )}
        {why && (
          <>
            <dt>Retention</dt>
            <dd>{why}</dd>
          </>
        )}
      </dl>
      {p.health === 'ok' && (
        <p>
          <a href={restoreHref(repo, job, p.id)}>Restore from this point…</a> · <a href={filesHref(repo, job, p.id)}>Browse its files…</a>
        </p>
      )}
    </div>
  );
}

export function PointsPage({ repo, job }: { repo: string; job: string }) {
  const [points, setPoints] = useState<Point[] | undefined>();
  const [plan, setPlan] = useState<RetentionPlan | undefined>();
  const [tested, setTested] = useState<ReadonlyMap<string, TestedPoint>>(new Map());
  const [error, setError] = useState<unknown>();
  // Answers still awaited (points, plan, tested): the card grows as the plan and the tests arrive, so the page
  // says it is settled (data-ready) only when all three are in and its links stop moving under a pointer.
  const [awaited, setAwaited] = useState(3);
  const [selected, setSelected] = useState(-1);
  const [hovered, setHovered] = useState<number | null>(null);
  const [n, setN] = useState(0);
  const reload = useCallback(() => setN((x) => x + 1), []);

  // The points and the plan are asked for at once; the timeline is drawn as soon as the points are here.
  useEffect(() => {
    let live = true;
    setAwaited(3);
    const arrived = () => live && setAwaited((a) => a - 1);
    const base = `/repositories/${seg(repo)}/jobs/${seg(job)}`;
    api
      .get<PointList>(`${base}/points`)
      .then(
        (list) => {
          if (!live) return;
          setPoints(list.points);
          setError(undefined);
          setSelected((s) => (s >= 0 && s < list.points.length ? s : list.points.length - 1));
        },
        (e: unknown) => live && setError(e),
      )
      .finally(arrived);
    api
      .get<RetentionPlan>(`${base}/retention-plan`)
      .then(
        (p) => live && setPlan(p),
        (e: unknown) => live && setError(e),
      )
      .finally(arrived);
    api
      .get<{ points: TestedPoint[] }>(testedPointsPath(repo, job))
      .then(
        (r) => live && setTested(new Map(r.points.map((t) => [t.point, t]))),
        (e: unknown) => live && setError(e),
      )
      .finally(arrived);
    return () => {
      live = false;
    };
  }, [repo, job, n]);

  const kept = useMemo(() => new Map((plan?.kept ?? []).map((k) => [k.id, k.reason])), [plan]);
  const planned = useMemo(() => plannedFor(plan), [plan]);
  const list = points ?? [];
  const why = (p: Point): string | undefined => planned.get(p.id) ?? kept.get(p.id);
  const shown = list[hovered ?? selected];
  const chains = useMemo(() => chainSpans(list).filter((s) => s.chainId !== null).length, [list]);
  const damaged = list.filter((p) => p.health === 'damaged').length;
  const stored = list.reduce((a, p) => a + (p.storedBytes ?? 0), 0);

  return (
    <section class="points-page" aria-labelledby="points-title" data-ready={points && awaited === 0 ? 'true' : undefined}>
      <header class="page-head">
        <h1 id="points-title">
          Restore points of <a href={`#/jobs/${seg(repo)}/${seg(job)}`}>{job}</a>
        </h1>
        <button type="button" class="btn btn-plain" onClick={reload}>
          Refresh
        </button>
      </header>
      <ErrorNote error={error} />
      {points && (
        <p class="summary" data-summary>
          {list.length} point{list.length === 1 ? '' : 's'} in {chains} chain{chains === 1 ? '' : 's'}, {bytes(stored)} stored
          {damaged > 0 && <strong class="text-danger">, {damaged} damaged</strong>}
        </p>
      )}
      <div class="points-layout">
        <div class="points-main">
          <Legend />
          {points && list.length === 0 && <p>No restore points yet: run the job to make one.</p>}
          {points && list.length > 0 && (
            <Timeline
              points={list}
              selected={selected}
              onSelect={setSelected}
              onHover={setHovered}
              onOpen={(i) => {
                const p = list[i]!;
                if (p.health === 'ok') location.hash = restoreHref(repo, job, p.id);
              }}
              describe={(i) => describe(list[i]!, kept.get(list[i]!.id), planned.get(list[i]!.id))}
            />
          )}
          {shown && <PointCard repo={repo} job={job} p={shown} why={why(shown)} tested={tested.get(shown.id)} />}
        </div>
        {plan && <PlanPanel plan={plan} />}
      </div>
      {points && list.length > 0 && (
        <PointTable repo={repo} job={job} points={list} kept={kept} planned={planned} tested={tested} selected={list[selected]?.id} />
      )}
    </section>
  );
}
