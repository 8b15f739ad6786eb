/**
 * A run followed live: its record, log and the progress of the disk being
 * read, from GET /runs/{id}/events (Server-Sent Events). The stream sends
 * the log from `logAfter` on, the record whenever it changes, and `end`
 * when the run has finished.
 */
import { useEffect, useState } from 'preact/hooks';
import { events } from './api';
import { FINISHED_STATES, type LogLine, type Progress, type Run } from './api-types';

export interface LiveRun {
  run: Run | undefined;
  /** Log lines that arrived on the stream (after `logAfter`). */
  log: LogLine[];
  progress: Progress | undefined;
  ended: boolean;
  error: unknown;
}

/** The run's overall fraction done: finished disks plus the current disk's share. */
export function overallFraction(p: Progress | undefined, run: Run | undefined): number {
  if (run?.state === 'succeeded' || run?.state === 'warning') return 1;
  if (!p || p.diskCount <= 0) return 0;
  const disk = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : 0;
  return Math.min(1, (p.disk + disk) / p.diskCount);
}

/** Follows run `id` while `follow` is true, with the log lines after `logAfter` (read when the stream opens). */
export function useRunEvents(id: number, follow: boolean, logAfter = 0): LiveRun {
  const [state, setState] = useState<LiveRun>({ run: undefined, log: [], progress: undefined, ended: false, error: undefined });
  useEffect(() => {
    if (!follow) return;
    const close = events(`/runs/${id}/events${logAfter > 0 ? `?logAfter=${logAfter}` : ''}`, {
      run: (d) => setState((s) => ({ ...s, run: d as Run, ended: s.ended || FINISHED_STATES.includes((d as Run).state) })),
      log: (d) => setState((s) => ({ ...s, log: [...s.log, d as LogLine] })),
      progress: (d) => setState((s) => ({ ...s, progress: d as Progress })),
      end: () => setState((s) => ({ ...s, ended: true })),
      error: (d) => setState((s) => ({ ...s, error: new Error((d as { message?: string }).message ?? 'the event stream failed'), ended: true })),
    });
    return close;
    // logAfter is read once, when the stream opens: later lines come on the stream.
  }, [id, follow]);
  return state;
}
