/**
 * The conformance tests of SureBackup reports: recording (and recording
 * again), paging newest first, one report whole, and each point's newest
 * result (catalog-conformance.ts registers them).
 */
import assert from 'node:assert/strict';
import type { LabReportRecord, LabVmRecord } from '../catalog/catalog.js';
import { at, rejectsWith, type ConformanceTest } from './catalog-fixtures.js';

const vm = (job: string, point: string, ok: boolean, extra: Partial<LabVmRecord> = {}): LabVmRecord => ({
  job,
  point,
  name: job,
  ip: '10.99.0.10',
  booted: true,
  seconds: 7.5,
  tests: [
    { name: 'heartbeat', ok: true, detail: 'guest agent answered ✓', ms: 7500 },
    { name: 'tcp:80', ok, detail: ok ? 'connected' : 'refused', ms: 12 },
  ],
  screenshot: `/repos/a/surebackup/x/${job}.png`,
  ...extra,
});

export const labReport = (id: string, minutes: number, vms: readonly LabVmRecord[], repo = '/repos/a'): LabReportRecord => ({
  repo,
  id,
  startedAt: at(minutes),
  endedAt: at(minutes + 1),
  ok: vms.every((v) => v.booted && v.tests.every((t) => t.ok)),
  reportDir: `${repo}/surebackup/${id}`,
  vms,
});

export function labConformanceTests(t: ConformanceTest): void {
  t('recordLabReport keeps a report whole; getLabReport reads it back; another repository or id is LFB_ERR_REPORT_NOT_FOUND', async (c) => {
    const unbooted: LabVmRecord = { ...vm('db', 'db-p1', false, { booted: false, seconds: 300 }) };
    delete (unbooted as { screenshot?: string }).screenshot;
    const stored = labReport('a1b2c3', 0, [vm('web', 'web-p1', true, { note: 'started although db did not pass' }), unbooted]);
    await c.recordLabReport(stored);
    assert.deepEqual(await c.getLabReport('/repos/a', 'a1b2c3'), stored);
    assert.equal((await c.getLabReport('/repos/a', 'a1b2c3')).ok, false);
    await rejectsWith(c.getLabReport('/repos/b', 'a1b2c3'), 'LFB_ERR_REPORT_NOT_FOUND');
    await rejectsWith(c.getLabReport('/repos/a', 'ffffff'), 'LFB_ERR_REPORT_NOT_FOUND');
    await rejectsWith(c.recordLabReport({ ...stored, id: '' }), 'LFB_ERR_INVALID_ARGUMENT');
    await rejectsWith(c.recordLabReport({ ...stored, startedAt: 'yesterday' }), 'LFB_ERR_INVALID_ARGUMENT');
  });

  t('listLabReports pages a repository’s reports newest recorded first; recording an id again replaces it and makes it the newest', async (c) => {
    const ids = Array.from({ length: 12 }, (_, i) => `r${String(i).padStart(2, '0')}`);
    for (const [i, id] of ids.entries()) await c.recordLabReport(labReport(id, i, [vm('web', `web-p${i}`, i % 3 !== 0)]));
    await c.recordLabReport(labReport('other', 50, [vm('web', 'web-p1', true)], '/repos/b'));
    const seen: string[] = [];
    let before: string | undefined;
    for (let pages = 0; ; pages++) {
      assert.ok(pages < 10, 'paging ends');
      const page = await c.listLabReports({ repo: '/repos/a', limit: 5, ...(before === undefined ? {} : { before }) });
      seen.push(...page.reports.map((r) => r.id));
      if (page.next === null) break;
      assert.equal(page.next, page.reports[page.reports.length - 1]!.id);
      before = page.next;
    }
    assert.deepEqual(seen, [...ids].reverse());
    assert.equal((await c.listLabReports({ repo: '/repos/a' })).reports.length, 12, 'default page holds them all');
    assert.deepEqual(
      (await c.listLabReports({ repo: '/repos/b' })).reports.map((r) => r.id),
      ['other'],
    );
    assert.deepEqual(await c.listLabReports({ repo: '/repos/none' }), { reports: [], next: null });
    const exact = await c.listLabReports({ repo: '/repos/a', limit: 3, before: 'r03' });
    assert.deepEqual(
      exact.reports.map((r) => r.id),
      ['r02', 'r01', 'r00'],
    );
    assert.equal(exact.next, null, 'a page that ends exactly at the oldest report has no next');
    await rejectsWith(c.listLabReports({ repo: '/repos/a', before: 'nope' }), 'LFB_ERR_REPORT_NOT_FOUND');
    await rejectsWith(c.listLabReports({ repo: '/repos/a', limit: 0 }), 'LFB_ERR_INVALID_ARGUMENT');

    const again = labReport('r04', 99, [vm('web', 'web-p4', true), vm('db', 'db-p9', true)]);
    await c.recordLabReport(again);
    const first = await c.listLabReports({ repo: '/repos/a', limit: 2 });
    assert.deepEqual(
      first.reports.map((r) => r.id),
      ['r04', 'r11'],
    );
    assert.deepEqual(first.reports[0], again);
    assert.equal((await c.listLabReports({ repo: '/repos/a', limit: 100 })).reports.length, 12, 'replaced, not added');
  });

  t('latestLabResults gives each point of a job its newest result: failed if any of its VMs in that report failed', async (c) => {
    await c.recordLabReport(labReport('r1', 0, [vm('web', 'p1', false), vm('db', 'd1', true)]));
    await c.recordLabReport(labReport('r2', 10, [vm('web', 'p1', true), vm('web', 'p2', true)]));
    await c.recordLabReport(labReport('r3', 20, [vm('web', 'p2', true), vm('web', 'p2', false, { booted: false })]));
    await c.recordLabReport(labReport('r4', 30, [vm('web', 'p3', true)], '/repos/b'));
    assert.deepEqual(await c.latestLabResults('/repos/a', 'web'), [
      { point: 'p2', lastTestedAt: at(21), ok: false, reportId: 'r3' },
      { point: 'p1', lastTestedAt: at(11), ok: true, reportId: 'r2' },
    ]);
    assert.deepEqual(await c.latestLabResults('/repos/a', 'db'), [{ point: 'd1', lastTestedAt: at(1), ok: true, reportId: 'r1' }]);
    assert.deepEqual(await c.latestLabResults('/repos/b', 'web'), [{ point: 'p3', lastTestedAt: at(31), ok: true, reportId: 'r4' }]);
    assert.deepEqual(await c.latestLabResults('/repos/a', 'nope'), []);
    // A report recorded again replaces its results too.
    await c.recordLabReport(labReport('r3', 40, [vm('web', 'p2', true)]));
    assert.deepEqual((await c.latestLabResults('/repos/a', 'web'))[0], { point: 'p2', lastTestedAt: at(41), ok: true, reportId: 'r3' });
  });
}
