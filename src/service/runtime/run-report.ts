import type { RunRecord } from '../../catalog/catalog.js';

/** syslog priorities (RFC 5424): journald reads a leading `<N>` on a line of standard error as the line's priority. */
const PRIORITY: Record<RunRecord['state'], number> = {
  queued: 6,
  running: 6,
  succeeded: 6,
  warning: 4,
  failed: 3,
  interrupted: 4,
  stopped: 5,
};

/** A value as key=value takes it: bare when it is simple, else JSON-quoted. */
function field(key: string, value: string | number): string {
  const text = String(value);
  return `${key}=${/^[A-Za-z0-9._:/@+-]+$/.test(text) ? text : JSON.stringify(text)}`;
}

/**
 * The one line a run leaves on standard error when it ends: priority prefix,
 * then key=value fields journald and syslog keep as they are, e.g.
 * `<3>lifeboat run=12 job=web01 repo=/backups state=failed seconds=4.1 code=LFB_ERR_DISK_READ message="…"`.
 */
export function runEndedLine(run: RunRecord): string {
  const parts = ['lifeboat', field('run', run.id), field('job', run.job), field('repo', run.repo), field('state', run.state), field('trigger', run.trigger)];
  if (run.kind !== 'backup') parts.push(field('kind', run.kind));
  if (run.attempt > 1) parts.push(field('attempt', run.attempt));
  if (run.reportId) parts.push(field('report', run.reportId));
  if (run.startedAt && run.endedAt) parts.push(field('seconds', ((Date.parse(run.endedAt) - Date.parse(run.startedAt)) / 1000).toFixed(1)));
  if (run.pointId) parts.push(field('point', run.pointId));
  if (run.changeMethod) parts.push(field('changes', run.changeMethod));
  if (run.state === 'succeeded' || run.state === 'warning') parts.push(field('bytes_read', run.bytesRead), field('bytes_stored', run.bytesStored));
  if (run.errorCode) parts.push(field('code', run.errorCode));
  if (run.errorMessage) parts.push(field('message', run.errorMessage.replace(/\s+/g, ' ').slice(0, 500)));
  return `<${PRIORITY[run.state]}>${parts.join(' ')}`;
}
