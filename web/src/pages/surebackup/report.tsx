/**
 * One SureBackup report (GET …/surebackup/reports/{id}): per VM its point,
 * address and boot, every test with its result, detail and time (the
 * failed ones marked by a sign and a word, not only red), and the screenshot
 * the run took of its screen at the end.
 */
import { duration, time } from '../../format';
import { CopyButton, ErrorNote, useApi } from '../../ui';
import { bootText, counts, reportPath, reportsHref, runTime, screenshotUrl, type Report, type ReportVm } from './model';
import { ResultMark } from './result-mark';

const short = (id: string): string => id.slice(0, 8);

function Screenshot({ repo, id, index, vm }: { repo: string; id: string; index: number; vm: ReportVm }) {
  if (!vm.screenshot) return <p class="muted sb-no-screen">No screenshot: the run could not take one of this VM's screen.</p>;
  const src = screenshotUrl(repo, id, index);
  return (
    <figure class="sb-screen">
      {/* The link opens the picture at its own size; the figure shows it scaled to the card. */}
      <a href={src} target="_blank" rel="noopener">
        <img src={src} alt={`Screen of ${vm.name} at the end of its tests`} />
      </a>
      <figcaption class="muted">Screen of {vm.name} at the end of its tests</figcaption>
    </figure>
  );
}

function VmCard({ repo, id, index, vm }: { repo: string; id: string; index: number; vm: ReportVm }) {
  const failed = vm.tests.filter((t) => !t.ok).length;
  const titleId = `sb-vm-${index}`;
  return (
    <article class="card sb-vm" aria-labelledby={titleId} data-vm={vm.name}>
      <header class="sb-vm-head">
        <h2 id={titleId}>{vm.name}</h2>
        <ResultMark ok={vm.booted && failed === 0} />
      </header>
      <dl class="stats sb-vm-stats">
        <div>
          <dt>Point</dt>
          <dd>
            <a href={`#/jobs/${encodeURIComponent(repo)}/${encodeURIComponent(vm.job)}/points`} title={vm.point}>
              {vm.job} · {short(vm.point)}
            </a>
          </dd>
        </div>
        <div>
          <dt>Address</dt>
          <dd>{vm.ip}</dd>
        </div>
        <div>
          <dt>Boot</dt>
          <dd data-stat="boot">{bootText(vm)}</dd>
        </div>
        <div>
          <dt>Tests</dt>
          <dd data-stat="tests">
            {vm.tests.length - failed} passed, {failed} failed
          </dd>
        </div>
      </dl>
      {vm.note && <p class="sb-note">{vm.note}</p>}
      <div class="sb-vm-body">
        <div class="table-wrap">
          <table class="sb-tests" aria-label={`Tests of ${vm.name}`}>
            <thead>
              <tr>
                <th scope="col">Test</th>
                <th scope="col">Result</th>
                <th scope="col">Detail</th>
                <th scope="col" class="num">
                  Time
                </th>
              </tr>
            </thead>
            <tbody>
              {vm.tests.map((t, i) => (
                <tr key={i} data-test={t.name} data-ok={String(t.ok)} class={t.ok ? undefined : 'row-failed'}>
                  <th scope="row">
                    <code>{t.name}</code>
                  </th>
                  <td>
                    <ResultMark ok={t.ok} />
                  </td>
                  <td class="wrap">{t.detail}</td>
                  <td class="num">{duration(t.ms)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Screenshot repo={repo} id={id} index={index} vm={vm} />
      </div>
    </article>
  );
}

export function SureBackupReportPage({ repo, id }: { repo: string; id: string }) {
  const { data: r, error } = useApi<Report>(reportPath(repo, id));
  const c = r ? counts(r) : undefined;
  return (
    <section class="sb-report" aria-labelledby="sb-report-title" data-ready={r || error ? 'true' : undefined} data-report={id}>
      <p class="sb-back">
        <a href={reportsHref(repo)}>← SureBackup reports of {repo}</a>
      </p>
      <header class="page-head">
        <h1 id="sb-report-title">
          SureBackup report {r ? <>of {time(r.startedAt)}</> : <code>{short(id)}</code>} {r && <ResultMark ok={r.ok} />}
        </h1>
      </header>
      <ErrorNote error={error} />
      {r && c && (
        <>
          <dl class="stats card sb-summary">
            <div>
              <dt>Started</dt>
              <dd>{time(r.startedAt)}</dd>
            </div>
            <div>
              <dt>Took</dt>
              <dd>{runTime(r)}</dd>
            </div>
            <div>
              <dt>VMs</dt>
              <dd>{r.vms.length}</dd>
            </div>
            <div>
              <dt>Tests</dt>
              <dd data-stat="tests">
                {c.passed} passed, {c.failed > 0 ? <strong class="text-danger">{c.failed} failed</strong> : '0 failed'}
              </dd>
            </div>
            <div class="sb-dir">
              <dt>Report folder</dt>
              <dd>
                <code class="path">{r.reportDir}</code> <CopyButton text={r.reportDir} />
              </dd>
            </div>
          </dl>
          {r.vms.map((vm, i) => (
            <VmCard key={i} repo={repo} id={r.id} index={i} vm={vm} />
          ))}
        </>
      )}
    </section>
  );
}
