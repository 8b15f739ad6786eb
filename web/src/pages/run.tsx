import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { FINISHED_STATES, type LogLine, type RunDetail } from '../api-types';
import { bytes, duration, time } from '../format';
import { href } from '../routes';
import { overallFraction, useRunEvents } from '../run-events';
import { Button, ErrorNote, ProgressBar, StateBadge, useApi } from '../ui';

const STEP_COLOURS = ['#0b62c4', '#17794a', '#c27c0e', '#8e44ad', '#c22f2f', '#16a2b8', '#6c757d', '#d63384'];

/** Time by step as one bar and a table: where the run spent its time. */
function Steps({ steps }: { steps: Record<string, number> }) {
  const entries = Object.entries(steps).filter(([, ms]) => ms > 0);
  const total = entries.reduce((a, [, ms]) => a + ms, 0);
  if (entries.length === 0) return <p class="muted">No step timings yet.</p>;
  return (
    <>
      <div class="steps" aria-hidden="true">
        {entries.map(([name, ms], i) => (
          <span key={name} title={`${name}: ${duration(ms)}`} style={{ width: `${(100 * ms) / total}%`, background: STEP_COLOURS[i % STEP_COLOURS.length] }} />
        ))}
      </div>
      <div class="table-wrap">
        <table aria-label="Time by step">
          <thead>
            <tr>
              <th>step</th>
              <th class="num">time</th>
              <th class="num">share</th>
            </tr>
          </thead>
          <tbody>
            {entries.map(([name, ms], i) => (
              <tr key={name}>
                <td>
                  <span class="swatch" style={{ background: STEP_COLOURS[i % STEP_COLOURS.length] }} />
                  {name}
                </td>
                <td class="num">{duration(ms)}</td>
                <td class="num">{((100 * ms) / total).toFixed(1)} %</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

function Log({ lines }: { lines: LogLine[] }) {
  const ref = useRef<HTMLPreElement>(null);
  // Keep the newest line in view while the run writes, unless the reader scrolled up.
  useEffect(() => {
    const el = ref.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 80) el.scrollTop = el.scrollHeight;
  }, [lines.length]);
  if (lines.length === 0) return <p class="muted">No log lines yet.</p>;
  return (
    <pre class="log" ref={ref} tabIndex={0} aria-label="Run log" aria-live="polite">
      {lines.map((l) => (
        <div key={l.seq} class={`log-${l.level}`}>
          {time(l.at)} {l.level.padEnd(5)} {l.message}
        </div>
      ))}
    </pre>
  );
}

/** The log lines of the first read and of the stream (which sends the whole log again), once each, in order. */
function mergeLog(a: readonly LogLine[], b: readonly LogLine[]): LogLine[] {
  const bySeq = new Map<number, LogLine>();
  for (const l of [...a, ...b]) bySeq.set(l.seq, l);
  return [...bySeq.values()].sort((x, y) => x.seq - y.seq);
}

/** One run: result, time by step, bytes, change method, log; live (SSE) while it runs. */
export function RunPage({ id }: { id: number }) {
  const loaded = useApi<RunDetail>(`/runs/${id}`);
  const first = loaded.data;
  // The stream opens at once, beside the first read (not after it): a short run's progress is seen from its start.
  // A finished run's stream sends the record, the log and `end`, and closes.
  const live = useRunEvents(id, true);
  const [stopError, setStopError] = useState<unknown>();
  const [stopping, setStopping] = useState(false);
  const runningState = (live.run ?? first?.run)?.state;
  const sawRunning = useRef(false);
  if (runningState !== undefined && !FINISHED_STATES.includes(runningState)) sawRunning.current = true;
  // When a run seen running has ended, the tasks' final numbers come from one more read.
  const [final, setFinal] = useState<RunDetail | undefined>();
  useEffect(() => {
    if (!live.ended || !sawRunning.current) return;
    api.get<RunDetail>(`/runs/${id}`).then(setFinal, () => undefined);
  }, [live.ended, id]);

  // The page shows as soon as either the read or the stream has the run: the stream's progress may come first.
  const run = final?.run ?? live.run ?? first?.run;
  if (!run) return loaded.error ? <ErrorNote error={loaded.error} /> : <p aria-busy="true">Loading run {id}…</p>;
  const tasks = final?.tasks ?? first?.tasks ?? [];
  const log = final ? final.log : mergeLog(first?.log ?? [], live.log);
  const running = !FINISHED_STATES.includes(run.state);
  const fraction = overallFraction(live.progress, run);
  const showBar = running || sawRunning.current;

  const stop = async (): Promise<void> => {
    setStopping(true);
    try {
      await api.post(`/runs/${id}/stop`);
      setStopError(undefined);
    } catch (err) {
      setStopError(err);
    } finally {
      setStopping(false);
    }
  };

  return (
    <section aria-labelledby="run-title">
      <div class="toolbar">
        <h1 id="run-title">
          Run {run.id} <StateBadge state={run.state} />
        </h1>
        <span class="spacer" />
        {run.kind === 'surebackup' ? (
          // A SureBackup job's run: its job (and report) are on the SureBackup page, not a backup job's of the same name.
          <a href={run.reportId === null ? href('surebackup', run.repoName) : href('surebackup', run.repoName, run.reportId)}>
            SureBackup job {run.repoName}/{run.job}
          </a>
        ) : run.kind === 'copy' ? (
          // A copy job's run: its job is on the Copies page (a backup job of the same name is another job).
          <a href={href('copies', run.repoName)}>
            Copy job {run.repoName}/{run.job}
          </a>
        ) : run.kind === 'tier' ? (
          // The repository's capacity tier: no job page of its own.
          <span>Capacity tier of {run.repoName}</span>
        ) : (
          <a href={href('jobs', run.repoName, run.job)}>
            Job {run.repoName}/{run.job}
          </a>
        )}
        {running && (
          <Button mutating kind="danger" busy={stopping} onClick={() => void stop()}>
            Stop run
          </Button>
        )}
      </div>
      <ErrorNote error={stopError} />
      {showBar && (
        <div class="card">
          <ProgressBar
            label={`Run ${run.id} progress`}
            value={Math.round(fraction * 1000)}
            max={1000}
            text={
              live.progress && running
                ? `disk ${live.progress.disk + 1}/${live.progress.diskCount}: ${bytes(live.progress.bytesDone)} / ${bytes(live.progress.bytesTotal)}`
                : `${(fraction * 100).toFixed(0)} %`
            }
          />
        </div>
      )}
      {run.errorMessage && <ErrorNote error={new ApiError(0, run.errorCode ?? 'LFB_ERR_INTERNAL', run.errorMessage)} />}
      <div class="card">
        <dl class="stats">
          <div>
            <dt>result</dt>
            <dd>{run.state}</dd>
          </div>
          <div>
            <dt>trigger</dt>
            <dd>
              {run.trigger}
              {run.attempt > 1 ? ` (attempt ${run.attempt})` : ''}
            </dd>
          </div>
          <div>
            <dt>queued</dt>
            <dd>{time(run.queuedAt)}</dd>
          </div>
          <div>
            <dt>started</dt>
            <dd>{time(run.startedAt)}</dd>
          </div>
          <div>
            <dt>ended</dt>
            <dd>{time(run.endedAt)}</dd>
          </div>
          <div>
            <dt>took</dt>
            <dd>{run.startedAt && run.endedAt ? duration(Date.parse(run.endedAt) - Date.parse(run.startedAt)) : '—'}</dd>
          </div>
          <div>
            <dt>bytes read</dt>
            <dd>{bytes(run.bytesRead)}</dd>
          </div>
          <div>
            <dt>bytes stored</dt>
            <dd>{bytes(run.bytesStored)}</dd>
          </div>
          <div>
            <dt>change method</dt>
            <dd title={run.changeReason ?? undefined}>{run.changeMethod ?? '—'}</dd>
          </div>
          <div>
            <dt>point</dt>
            <dd>{run.pointId ? <a href={href('jobs', run.repoName, run.job, 'points')}>{run.pointId}</a> : '—'}</dd>
          </div>
        </dl>
        {run.changeReason && <p class="muted">{run.changeReason}</p>}
      </div>
      <h2>Time by step</h2>
      <div class="card">
        <Steps steps={run.steps} />
      </div>
      {tasks.length > 0 && (
        <>
          <h2>Disks</h2>
          <div class="card table-wrap">
            <table aria-label="Disks of the run">
              <thead>
                <tr>
                  <th>disk</th>
                  <th>state</th>
                  <th class="num">read</th>
                  <th class="num">stored</th>
                </tr>
              </thead>
              <tbody>
                {tasks.map((t) => (
                  <tr key={t.disk}>
                    <td>{t.diskName}</td>
                    <td>
                      <StateBadge state={t.state} />
                    </td>
                    <td class="num">{bytes(t.bytesRead)}</td>
                    <td class="num">{bytes(t.bytesStored)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      <h2>Log</h2>
      <Log lines={log} />
    </section>
  );
}
