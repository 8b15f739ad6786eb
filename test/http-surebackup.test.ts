/**
 * SureBackup reports through the HTTP API, in process (fastify inject, no
 * root, no VMs): reports with real PNG files in folders under the fixture's
 * repository, recorded through the service's seam as `surebackup run` hands
 * them over the control API, then every route: the list and its paging, one
 * report, a screenshot's bytes, the refusals (a screenshot outside its
 * folder, out of the repository, behind a link, not a PNG), each point's
 * newest result, viewers allowed and no credentials refused. Every answer is
 * checked against the served OpenAPI document.
 */
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { crc32, deflateSync } from 'node:zlib';
import { callControl, startControlApi } from '../src/app/control-api.js';
import { parseLabReport, type HandedLabReport } from '../src/app/control-lab-reports.js';
import { isLifeboatError } from '../src/core/errors.js';
import { labReportsInCatalog } from '../src/service/lab-reports.js';
import { OpenApiValidator, makeFixture, type Fixture } from './http-api-fixture.js';

let fx: Fixture;
let doc: OpenApiValidator;

/** An 8-bit RGB PNG of width×height in one colour, with real CRCs. */
function png(width: number, height: number, rgb: [number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => rgb).flat())]);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const WEB_PNG = png(8, 6, [10, 120, 200]);
const T0 = Date.parse('2026-12-01T02:00:00.000Z');
const at = (s: number): string => new Date(T0 + s * 1000).toISOString();

/** A report as `surebackup run` writes report.json: `shots` are the VMs' screenshot paths (undefined: none taken). */
function report(id: string, startS: number, dir: string, shots: (string | undefined)[], failing = false): HandedLabReport {
  const vms = shots.map((shot, i) => ({
    job: i === 0 ? 'web' : 'db',
    point: `p-${id}-${i}`,
    name: i === 0 ? 'web' : 'db',
    ip: `10.99.0.${10 + i}`,
    booted: !(failing && i === 1),
    seconds: 7.4 + i,
    tests: [
      {
        name: 'heartbeat',
        ok: !(failing && i === 1),
        detail: failing && i === 1 ? 'no answer within 300 s; serial log ends: Kernel panic' : 'guest agent answered',
        ms: 7400,
      },
      { name: 'ping', ok: true, detail: '3/3 answered', ms: 40 },
      { name: 'tcp:80', ok: !failing, detail: failing ? 'connection refused' : 'connected', ms: 3 },
    ],
    ...(shot !== undefined ? { screenshot: shot } : {}),
    ...(i === 1 && failing ? { note: 'started although web, which it waits for, did not pass its heartbeat' } : {}),
  }));
  return { id, startedAt: at(startS), endedAt: at(startS + 60), ok: vms.every((v) => v.booted && v.tests.every((t) => t.ok)), reportDir: dir, vms };
}

let reportsRoot: string;
const get = (url: string, token = fx.tokens.viewer) => fx.api.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
const REPORTS = '/api/v1/repositories/{repo}/surebackup/reports';
const ONE = `${REPORTS}/{id}`;
const SHOT = `${ONE}/vms/{index}/screenshot`;
const POINTS = '/api/v1/repositories/{repo}/jobs/{job}/surebackup';

/** Records a report the way the server does when the CLI hands it over: the body parsed, then the service's seam. */
async function record(r: HandedLabReport): Promise<void> {
  const parsed = parseLabReport(JSON.stringify(r));
  assert.deepEqual(await labReportsInCatalog(fx.catalog, fx.repo).record(parsed), { id: r.id });
}

before(async () => {
  fx = await makeFixture();
  doc = await OpenApiValidator.fetch(fx.api);
  reportsRoot = join(fx.repo, 'surebackup');
  const folder = async (id: string): Promise<string> => {
    const dir = join(reportsRoot, id);
    await mkdir(dir, { recursive: true });
    return dir;
  };
  // The oldest: passed, web's screenshot in its folder, db without one.
  const a = await folder('aaa111');
  await writeFile(join(a, 'web.png'), WEB_PNG);
  await record(report('aaa111', 0, a, [join(a, 'web.png'), undefined]));
  // Failed: db did not boot; its screenshot path names a PNG outside the folder (in the fixture's folder, out of the repository).
  const b = await folder('bbb222');
  await writeFile(join(b, 'web.png'), WEB_PNG);
  await writeFile(join(fx.dir, 'outside.png'), WEB_PNG);
  await record(report('bbb222', 100, b, [join(b, 'web.png'), join(fx.dir, 'outside.png')], true));
  // Its folder's files: a link that leads out of the repository, and a file that is not a PNG.
  const c = await folder('ccc333');
  await symlink(join(fx.dir, 'outside.png'), join(c, 'web.png'));
  await writeFile(join(c, 'db.png'), 'not a picture');
  await record(report('ccc333', 200, c, [join(c, 'web.png'), join(c, 'db.png')]));
  // A run with --report-dir outside the repository: its PNG is real, but never served.
  const d = join(fx.dir, 'elsewhere', 'ddd444');
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'web.png'), WEB_PNG);
  await record(report('ddd444', 300, d, [join(d, 'web.png')]));
});
after(async () => {
  await fx?.close();
});

test('the list: newest first, each VM with its counts, paged with limit and before=<next>', async () => {
  const res = await get(`/api/v1/repositories/${fx.repoName}/surebackup/reports`);
  assert.equal(res.statusCode, 200, res.body);
  const page = doc.check('GET', REPORTS, res) as {
    reports: { id: string; repo: string; ok: boolean; vms: { job: string; booted: boolean; passed: number; failed: number }[] }[];
    next: string | null;
  };
  assert.deepEqual(
    page.reports.map((r) => r.id),
    ['ddd444', 'ccc333', 'bbb222', 'aaa111'],
  );
  assert.equal(page.next, null);
  const failed = page.reports.find((r) => r.id === 'bbb222')!;
  assert.equal(failed.ok, false);
  assert.equal(failed.repo, fx.repoName);
  assert.deepEqual(
    failed.vms.map((v) => [v.job, v.booted, v.passed, v.failed]),
    [
      ['web', true, 2, 1],
      ['db', false, 1, 2],
    ],
  );
  assert.equal(page.reports.find((r) => r.id === 'aaa111')!.ok, true);

  const seen: string[] = [];
  let before: string | null = null;
  for (let pages = 0; ; pages++) {
    assert.ok(pages < 10, 'paging ends');
    const url = `/api/v1/repositories/${fx.repoName}/surebackup/reports?limit=3${before === null ? '' : `&before=${before}`}`;
    const p = doc.check('GET', REPORTS, await get(url)) as typeof page;
    seen.push(...p.reports.map((r) => r.id));
    if (p.next === null) break;
    assert.equal(p.next, p.reports[p.reports.length - 1]!.id);
    before = p.next;
  }
  assert.deepEqual(seen, ['ddd444', 'ccc333', 'bbb222', 'aaa111']);
  const stale = await get(`/api/v1/repositories/${fx.repoName}/surebackup/reports?before=zzz999`);
  assert.equal(stale.statusCode, 404);
  assert.equal((doc.check('GET', REPORTS, stale) as { code: string }).code, 'LFB_ERR_REPORT_NOT_FOUND');
  const bad = await get(`/api/v1/repositories/${fx.repoName}/surebackup/reports?limit=0`);
  assert.equal(bad.statusCode, 422);
});

test('one report: each VM with its tests, its note, and whether its screenshot is served', async () => {
  const res = await get(`/api/v1/repositories/${fx.repoName}/surebackup/reports/bbb222`);
  assert.equal(res.statusCode, 200, res.body);
  const r = doc.check('GET', ONE, res) as {
    id: string;
    ok: boolean;
    reportDir: string;
    vms: { job: string; note?: string; screenshot: boolean; tests: { name: string; ok: boolean; detail: string; ms: number }[] }[];
  };
  assert.equal(r.id, 'bbb222');
  assert.equal(r.ok, false);
  assert.equal(r.reportDir, join(reportsRoot, 'bbb222'));
  assert.deepEqual(r.vms[1]!.tests[0], { name: 'heartbeat', ok: false, detail: 'no answer within 300 s; serial log ends: Kernel panic', ms: 7400 });
  assert.match(r.vms[1]!.note ?? '', /did not pass its heartbeat/);
  assert.deepEqual(
    r.vms.map((v) => v.screenshot),
    [true, false],
    "a screenshot outside the report's folder is not offered",
  );
  const first = doc.check('GET', ONE, await get(`/api/v1/repositories/${fx.repoName}/surebackup/reports/aaa111`)) as typeof r;
  assert.deepEqual(
    first.vms.map((v) => [v.screenshot, v.tests.length]),
    [
      [true, 3],
      [false, 3],
    ],
  );
  const elsewhere = doc.check('GET', ONE, await get(`/api/v1/repositories/${fx.repoName}/surebackup/reports/ddd444`)) as typeof r;
  assert.equal(elsewhere.vms[0]!.screenshot, false, 'a report folder outside the repository offers no screenshot');
});

test('a screenshot: the PNG bytes as image/png; refused when it is not in the report folder inside the repository, behind a link, or not a PNG', async () => {
  const url = (id: string, i: number): string => `/api/v1/repositories/${fx.repoName}/surebackup/reports/${id}/vms/${i}/screenshot`;
  const ok = await get(url('aaa111', 0));
  assert.equal(ok.statusCode, 200, ok.body);
  assert.equal(ok.headers['content-type'], 'image/png');
  assert.equal(ok.headers['x-content-type-options'], 'nosniff');
  doc.check('GET', SHOT, ok);
  assert.deepEqual(ok.rawPayload, WEB_PNG);
  assert.deepEqual(doc.check('GET', SHOT, await get(url('bbb222', 0))) !== undefined, true);

  const refusals: [string, number, string, RegExp][] = [
    ['aaa111', 1, 'LFB_ERR_SCREENSHOT_NOT_FOUND', /none was taken/],
    ['aaa111', 2, 'LFB_ERR_REPORT_NOT_FOUND', /there is no VM 2/],
    ['bbb222', 1, 'LFB_ERR_SCREENSHOT_NOT_FOUND', /not in the report's folder/],
    ['ccc333', 0, 'LFB_ERR_SCREENSHOT_NOT_FOUND', /link leads out/],
    ['ccc333', 1, 'LFB_ERR_SCREENSHOT_NOT_FOUND', /not a PNG/],
    ['ddd444', 0, 'LFB_ERR_SCREENSHOT_NOT_FOUND', /not in the report's folder inside the repository/],
    ['nope00', 0, 'LFB_ERR_REPORT_NOT_FOUND', /no SureBackup report/],
  ];
  for (const [id, i, code, words] of refusals) {
    const res = await get(url(id, i));
    assert.equal(res.statusCode, 404, `${id} vm ${i}: ${res.statusCode} ${res.body}`);
    assert.equal(res.headers['content-type']?.toString().split(';')[0], 'application/json');
    const body = doc.check('GET', SHOT, res) as { code: string; message: string };
    assert.equal(body.code, code, `${id} vm ${i}`);
    assert.match(body.message, words);
    assert.ok(!res.body.includes('not a picture'), 'nothing of the refused file is sent');
  }
  const noRepo = await get(`/api/v1/repositories/elsewhere/surebackup/reports/aaa111/vms/0/screenshot`);
  assert.equal(noRepo.statusCode, 404);
  assert.equal(noRepo.json().code, 'LFB_ERR_REPO_NOT_FOUND');
});

test("a job's points with their newest SureBackup result", async () => {
  const res = await get(`/api/v1/repositories/${fx.repoName}/jobs/db/surebackup`);
  assert.equal(res.statusCode, 200, res.body);
  const body = doc.check('GET', POINTS, res) as { points: { point: string; lastTestedAt: string; ok: boolean; reportId: string }[] };
  assert.deepEqual(body.points, [
    { point: 'p-ccc333-1', lastTestedAt: at(260), ok: true, reportId: 'ccc333' },
    { point: 'p-bbb222-1', lastTestedAt: at(160), ok: false, reportId: 'bbb222' },
    { point: 'p-aaa111-1', lastTestedAt: at(60), ok: true, reportId: 'aaa111' },
  ]);
  const none = doc.check('GET', POINTS, await get(`/api/v1/repositories/${fx.repoName}/jobs/nothing/surebackup`));
  assert.deepEqual(none, { points: [] });
});

test('every report route: a viewer may read, no credentials is 401; unknown report 404', async () => {
  const urls: [string, string][] = [
    [REPORTS, `/api/v1/repositories/${fx.repoName}/surebackup/reports`],
    [ONE, `/api/v1/repositories/${fx.repoName}/surebackup/reports/aaa111`],
    [SHOT, `/api/v1/repositories/${fx.repoName}/surebackup/reports/aaa111/vms/0/screenshot`],
    [POINTS, `/api/v1/repositories/${fx.repoName}/jobs/web/surebackup`],
  ];
  for (const [template, url] of urls) {
    const asViewer = await get(url, fx.tokens.viewer);
    assert.equal(asViewer.statusCode, 200, `${url} as viewer: ${asViewer.body}`);
    doc.check('GET', template, asViewer);
    const anonymous = await fx.api.inject({ method: 'GET', url });
    assert.equal(anonymous.statusCode, 401, url);
    assert.equal((doc.check('GET', template, anonymous) as { code: string }).code, 'LFB_ERR_UNAUTHENTICATED');
  }
  const missing = await get(`/api/v1/repositories/${fx.repoName}/surebackup/reports/nope00`);
  assert.equal(missing.statusCode, 404);
  assert.equal((doc.check('GET', ONE, missing) as { code: string }).code, 'LFB_ERR_REPORT_NOT_FOUND');
  const badId = await get(`/api/v1/repositories/${fx.repoName}/surebackup/reports/..%2Fetc`);
  assert.equal(badId.statusCode, 422);
});

test('the control API body is checked field by field; ok is taken from the VMs', () => {
  const good = report('eee555', 0, join(reportsRoot, 'eee555'), [undefined]);
  assert.equal(parseLabReport(JSON.stringify({ ...good, ok: false })).ok, true, 'one VM, all passed');
  const failing = report('eee555', 0, join(reportsRoot, 'eee555'), [undefined, undefined], true);
  assert.equal(parseLabReport(JSON.stringify({ ...failing, ok: true })).ok, false, 'the body’s ok is not believed');
  // Fields it does not know (a screenshot test's size) are left out, not refused.
  const extra = { ...good, surprise: 1, vms: [{ ...good.vms[0]!, tests: [{ name: 'screenshot', ok: true, detail: 'png', ms: 3, width: 640, height: 480 }] }] };
  assert.deepEqual(parseLabReport(JSON.stringify(extra)), {
    ...good,
    vms: [{ ...good.vms[0]!, tests: [{ name: 'screenshot', ok: true, detail: 'png', ms: 3 }] }],
  });
  const refused: [unknown, RegExp][] = [
    ['{', /not valid JSON/],
    [{ ...good, id: '../x' }, /"id" must be/],
    [{ ...good, reportDir: 'relative/dir' }, /"reportDir" must be an absolute path/],
    [{ ...good, vms: [] }, /at least one VM/],
    [{ ...good, startedAt: 'yesterday' }, /"startedAt" must be an ISO-8601 time/],
    [{ ...good, vms: [{ ...good.vms[0], screenshot: 'web.png' }] }, /"vms\[0\]\.screenshot" must be an absolute path/],
    [{ ...good, vms: [{ ...good.vms[0], tests: [{ name: 'x', ok: 'yes', detail: '', ms: 1 }] }] }, /"vms\[0\]\.tests\[0\]\.ok" must be true or false/],
    [{ ...good, vms: [{ ...good.vms[0], booted: undefined }] }, /"vms\[0\]\.booted" is missing/],
  ];
  for (const [body, words] of refused) {
    assert.throws(
      () => parseLabReport(typeof body === 'string' ? body : JSON.stringify(body)),
      (err: unknown) => isLifeboatError(err, 'LFB_ERR_USAGE') && words.test((err as Error).message),
      String(words),
    );
  }
});

test('the control API route: a report POSTed as the CLI does is recorded; too large is 413; a server without a catalog says so', async () => {
  const ports = { nfsPort: 0, mountPort: 0, portmap: 'none', host: '127.0.0.1' };
  const dir = join(reportsRoot, 'fff666');
  const handed = report('fff666', 400, dir, [join(dir, 'web.png')]);
  const api = await startControlApi(fx.repo, fx.recovery, ports, { labReports: () => labReportsInCatalog(fx.catalog, fx.repo) });
  try {
    assert.deepEqual(await callControl(fx.repo, 'POST', '/surebackup/reports', { ...handed, ok: false }), { id: 'fff666' });
    const listed = doc.check('GET', REPORTS, await get(`/api/v1/repositories/${fx.repoName}/surebackup/reports?limit=1`)) as {
      reports: { id: string; ok: boolean }[];
    };
    assert.deepEqual(listed.reports, [{ ...listed.reports[0], id: 'fff666', ok: true }]);
    const huge = {
      ...handed,
      vms: [{ ...handed.vms[0]!, tests: Array.from({ length: 40 }, () => ({ name: 'x', ok: true, detail: 'y'.repeat(30_000), ms: 1 })) }],
    };
    await assert.rejects(
      callControl(fx.repo, 'POST', '/surebackup/reports', huge),
      (err: unknown) => isLifeboatError(err, 'LFB_ERR_USAGE') && /larger than 1048576/.test(String(err)),
    );
    await assert.rejects(callControl(fx.repo, 'POST', '/surebackup/reports', { ...handed, id: '' }), (err: unknown) => isLifeboatError(err, 'LFB_ERR_USAGE'));
  } finally {
    await api.close();
  }
  const bare = await startControlApi(fx.repo, fx.recovery, ports);
  try {
    await assert.rejects(callControl(fx.repo, 'POST', '/surebackup/reports', handed), (err: unknown) => isLifeboatError(err, 'LFB_ERR_SERVER_NOT_RUNNING'));
  } finally {
    await bare.close();
  }
});
