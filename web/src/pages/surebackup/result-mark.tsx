import { time } from '../../format';
import { reportHref, type TestedPoint } from './model';

/** A SureBackup result (a run's or a test's) as a badge: a sign and a word beside the colour, never the colour alone. */
export function ResultMark({ ok }: { ok: boolean }) {
  return (
    <span class={`badge badge-${ok ? 'ok' : 'failed'}`} data-result={ok ? 'ok' : 'failed'}>
      <span aria-hidden="true">{ok ? '✓' : '✗'}</span> {ok ? 'passed' : 'failed'}
    </span>
  );
}

/** A point's newest SureBackup result (the points page's mark), linked to its report. */
export function TestedMark({ repo, t }: { repo: string; t: TestedPoint }) {
  return (
    <a
      href={reportHref(repo, t.reportId)}
      class="tested-mark"
      data-tested={t.ok ? 'ok' : 'failed'}
      aria-label={`SureBackup ${t.ok ? 'passed' : 'failed'} ${time(t.lastTestedAt)}: open its report`}
    >
      <ResultMark ok={t.ok} />
    </a>
  );
}
