/**
 * The console's SureBackup pages in real Chromium, without VMs: a real serve
 * with a job and a point made by the CLI, and two reports of `surebackup
 * run` (report.json and a real PNG screenshot in their folders under the
 * repository, as the run writes them) handed to the server the way the CLI
 * hands its report. The list shows both, newest first, the failed one marked
 * by a sign and a word; the keyboard reaches a report; the report shows every
 * test with its result and the screenshot loads; the dashboard alerts on the
 * failed newest report and the points page marks the tested point.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';
import { after, before, test } from 'node:test';
import type { Page } from 'puppeteer-core';
import { callControl } from '../src/app/control-api.js';
import type { SureBackupReport } from '../src/lab/types.js';
import { apiGet, startConsole, type Console } from './console-harness.js';
import { cli, MiB, randomBytes, rng } from './helpers.js';

let con: Console;

before(async () => {
  con = await startConsole();
});
after(async () => {
  await con?.close();
});

/** A PNG of `width`×`height` (8-bit RGB, a gradient with a frame), with real CRCs: what Chromium decodes. */
function png(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const line = 1 + width * 3;
  const rows = Buffer.alloc(height * line);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const edge = x === 0 || y === 0 || x === width - 1 || y === height - 1;
      rows.set(edge ? [255, 255, 255] : [(x * 255) / width, (y * 255) / height, 96], y * line + 1 + x * 3);
    }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const SHOT = { width: 320, height: 200 };

/** A report's folder under the repository as `surebackup run` leaves it: report.json and a PNG per VM that has a screen. */
async function writeReport(report: SureBackupReport & { reportDir: string }, shots: Record<string, Buffer>): Promise<void> {
  await mkdir(report.reportDir, { recursive: true });
  for (const [name, bytes] of Object.entries(shots)) await writeFile(join(report.reportDir, `${name}.png`), bytes);
  await writeFile(join(report.reportDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
}

async function run(args: string[]): Promise<string> {
  const r = await cli(args);
  assert.equal(r.code, 0, `lifeboat ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Presses Tab until the focused element matches `selector` (at most `max` times); fails if it never does. */
async function tabTo(page: Page, selector: string, max = 60): Promise<void> {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
  }
  assert.fail(`${max} presses of Tab never reached ${selector}`);
}

test(
  'SureBackup reports in Chromium: list, a failed report marked, keyboard, every test, the screenshot, dashboard and points marks',
  { timeout: 3 * 60_000 },
  async () => {
    const disk = join(con.dir, 'web.img');
    await writeFile(disk, randomBytes(rng(16), 2 * MiB));
    await run(['job', 'create', 'web', '--repo', con.repo, '--disk', disk]);
    await run(['backup', 'web', '--repo', con.repo]);
    await run(['job', 'create', 'db', '--repo', con.repo, '--disk', disk]);
    await run(['backup', 'db', '--repo', con.repo]);

    const page = await con.newPage();
    try {
      await con.login(page, 'viewer');
      const [webPoint, dbPoint] = await Promise.all(
        ['web', 'db'].map(async (job) => (await apiGet<{ points: { id: string }[] }>(page, `/repositories/${con.repoName}/jobs/${job}/points`)).points[0]!.id),
      );
      const base = Date.now() - 1000_000;
      const at = (s: number): string => new Date(base + s * 1000).toISOString();
      const okDir = join(con.repo, 'surebackup', 'a1b2c3');
      const passed: SureBackupReport & { reportDir: string } = {
        id: 'a1b2c3',
        startedAt: at(0),
        endedAt: at(21),
        ok: true,
        reportDir: okDir,
        vms: [
          {
            job: 'web',
            point: webPoint!,
            name: 'web',
            ip: '10.99.0.10',
            booted: true,
            seconds: 8.4,
            screenshot: join(okDir, 'web.png'),
            tests: [
              { name: 'heartbeat', ok: true, detail: 'guest agent answered guest-ping', ms: 8400 },
              { name: 'ping', ok: true, detail: '10.99.0.10 answered 3 of 3', ms: 2004 },
              { name: 'http:http://{ip}/', ok: true, detail: 'HTTP 200', ms: 31 },
              { name: 'verify', ok: true, detail: `64 stored blocks of point ${webPoint} read and checked`, ms: 120 },
              { name: 'screenshot', ok: true, detail: `${SHOT.width}x${SHOT.height} PNG`, ms: 90 },
            ],
          },
        ],
      };
      const badDir = join(con.repo, 'surebackup', 'd4e5f6');
      const failed: SureBackupReport & { reportDir: string } = {
        id: 'd4e5f6',
        startedAt: at(600),
        endedAt: at(940),
        ok: false,
        reportDir: badDir,
        vms: [
          {
            job: 'web',
            point: webPoint!,
            name: 'web',
            ip: '10.99.0.10',
            booted: true,
            seconds: 9.1,
            screenshot: join(badDir, 'web.png'),
            tests: [
              { name: 'heartbeat', ok: true, detail: 'serial console matched LAB-UP', ms: 9100 },
              { name: 'tcp:5432', ok: false, detail: 'connect ECONNREFUSED 10.99.0.10:5432', ms: 12 },
              { name: 'http:http://{ip}/health', ok: false, detail: 'HTTP 503 Service Unavailable', ms: 40 },
              { name: 'screenshot', ok: true, detail: `${SHOT.width}x${SHOT.height} PNG`, ms: 85 },
            ],
          },
          {
            job: 'db',
            point: dbPoint!,
            name: 'db',
            ip: '10.99.0.11',
            booted: false,
            seconds: 300,
            tests: [
              { name: 'heartbeat', ok: false, detail: 'no heartbeat in 300 s; serial log ends: Kernel panic - not syncing', ms: 300_000 },
              { name: 'screenshot', ok: false, detail: 'QMP screendump: the VM is gone', ms: 3 },
            ],
          },
        ],
      };
      await writeReport(passed, { web: png(SHOT.width, SHOT.height) });
      await writeReport(failed, { web: png(SHOT.width, SHOT.height) });
      // Through the control API's route, as `surebackup run` hands its report over at its end; the older first.
      for (const r of [passed, failed]) assert.deepEqual(await callControl(con.repo, 'POST', '/surebackup/reports', r), { id: r.id });

      // A SureBackup job, shown above the reports with when it runs and its next run.
      const sbJob = await cli([
        'surebackup',
        'job',
        'create',
        'nightly',
        '--repo',
        con.repo,
        '--vm',
        'web',
        '--every-point',
        '--after',
        'web',
        '--schedule',
        '0 3 * * *',
      ]);
      assert.equal(sbJob.code, 0, sbJob.stderr);

      // The list: both reports, newest first; the failed one says so in words and with a sign, not by colour alone.
      await page.goto(`${con.url}#/surebackup/${con.repoName}`);
      await page.waitForSelector('.sb-page[data-ready] .sb-reports');
      const rows = await page.$$eval('.sb-reports tbody tr', (trs) =>
        trs.map((tr) => ({
          id: tr.getAttribute('data-report'),
          cls: tr.className,
          result: tr.querySelector('[data-result]')?.textContent ?? '',
          vms: [...tr.querySelectorAll('[data-vm]')].map((li) => li.textContent ?? ''),
        })),
      );
      assert.deepEqual(
        rows.map((r) => r.id),
        [failed.id, passed.id],
      );
      assert.match(rows[0]!.cls, /row-failed/);
      assert.equal(rows[0]!.result, '✗ failed');
      assert.equal(rows[1]!.result, '✓ passed');
      assert.doesNotMatch(rows[1]!.cls, /row-failed/);
      assert.deepEqual(rows[0]!.vms, ['web: booted in 9.1 s, 2 passed, ✗ 2 failed', 'db: did not boot (gave up after 5 min 0 s), 0 passed, ✗ 2 failed']);
      assert.deepEqual(rows[1]!.vms, ['web: booted in 8.4 s, 5 passed, 0 failed']);
      await page.waitForSelector('.sb-jobs[data-ready] tr[data-sb-job="nightly"]');
      const jobCells = await page.$$eval('.sb-job-table tbody tr', (trs) =>
        trs.map((tr) => [...tr.querySelectorAll('th, td')].map((c) => c.textContent ?? '')),
      );
      assert.equal(jobCells.length, 1);
      assert.deepEqual(jobCells[0]!.slice(0, 3), ['nightly', 'web (every point)', 'schedule 0 3 * * *, after backup job web']);
      assert.notEqual(jobCells[0]![3], '—', 'a scheduled job shows its next run');
      assert.equal(jobCells[0]![4], 'never run');
      await con.screenshot(page, 'surebackup-list');

      // The keyboard reaches the failed report's link from the page's top, and Enter opens it.
      await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
      await tabTo(page, `.sb-reports tr[data-report="${failed.id}"] a`);
      await Promise.all([page.waitForSelector(`.sb-report[data-ready][data-report="${failed.id}"] .sb-vm`), page.keyboard.press('Enter')]);
      assert.match(page.url(), new RegExp(`#/surebackup/${con.repoName}/${failed.id}$`));

      // Every test of every VM, in order, with its result; the failed ones marked.
      for (const vm of failed.vms) {
        const shown = await page.$$eval(`.sb-vm[data-vm="${vm.name}"] .sb-tests tbody tr`, (trs) =>
          trs.map((tr) => ({
            name: tr.getAttribute('data-test'),
            failedRow: tr.classList.contains('row-failed'),
            cells: [...tr.querySelectorAll('th, td')].map((c) => c.textContent ?? ''),
          })),
        );
        assert.deepEqual(
          shown.map((s) => [s.name, s.cells[1], s.failedRow, s.cells[2]]),
          vm.tests.map((t) => [t.name, t.ok ? '✓ passed' : '✗ failed', !t.ok, t.detail]),
          `tests of ${vm.name}`,
        );
      }
      assert.match(await page.$eval('.sb-summary [data-stat=tests]', (e) => e.textContent ?? ''), /2 passed, 4 failed/);
      // The screenshot loads (the browser decoded the PNG the run left); the VM without one says so.
      const img = await page.waitForFunction(
        () => {
          const i = document.querySelector<HTMLImageElement>('.sb-vm[data-vm="web"] .sb-screen img');
          return i && i.complete && i.naturalWidth > 0 ? { w: i.naturalWidth, h: i.naturalHeight, alt: i.alt } : null;
        },
        { timeout: 10_000 },
      );
      assert.deepEqual(await img.jsonValue(), { w: SHOT.width, h: SHOT.height, alt: 'Screen of web at the end of its tests' });
      assert.equal(await page.$('.sb-vm[data-vm="db"] .sb-screen img'), null);
      assert.match(await page.$eval('.sb-vm[data-vm="db"]', (e) => e.textContent ?? ''), /did not boot.*No screenshot/s);
      await con.screenshot(page, 'surebackup-report');

      // A phone's width: nothing grows sideways (the tables scroll inside their boxes), and the screenshot fits.
      await page.setViewport({ width: 390, height: 844 });
      await page
        .waitForFunction(() => document.documentElement.scrollWidth <= 391, { timeout: 5000 })
        .catch(async () => {
          assert.fail(`the report page is ${await page.evaluate(() => document.documentElement.scrollWidth)} px wide at 390 px`);
        });
      assert.ok((await page.$eval('.sb-screen img', (i) => i.getBoundingClientRect().right)) <= 390);
      await con.screenshot(page, 'surebackup-report-phone');
      await page.setViewport({ width: 1280, height: 900 });
      // Dark, as the system asks: the failed badge is still red, the passed green.
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
      const colours = await page.$$eval('.sb-vm[data-vm="web"] .sb-tests [data-result]', (bs) => bs.map((b) => getComputedStyle(b).color));
      const rgb = (s: string): number[] => (s.match(/\d+/g) ?? []).map(Number);
      const red = (s: string): boolean => {
        const [r = 0, g = 0] = rgb(s);
        return r > 150 && r - g > 60;
      };
      assert.deepEqual(colours.map(red), [false, true, true, false], colours.join(' '));
      await con.screenshot(page, 'surebackup-report-dark');
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);

      // The passed report's screenshot too.
      await page.goto(`${con.url}#/surebackup/${con.repoName}/${passed.id}`);
      await page.waitForFunction(() => {
        const i = document.querySelector<HTMLImageElement>('.sb-report[data-report="a1b2c3"] .sb-screen img');
        return i !== null && i.complete && i.naturalWidth > 0;
      });
      assert.equal(await page.$$eval('.sb-tests tbody tr', (trs) => trs.length), passed.vms[0]!.tests.length);
      assert.equal(await page.$$eval('.sb-tests tr.row-failed', (trs) => trs.length), 0);

      // The dashboard: the repository's newest report failed.
      await page.goto(`${con.url}#/`);
      const alert = await page.waitForSelector('xpath/.//ul[@class="alerts"]/li[contains(., "newest SureBackup run failed")]');
      assert.match(
        (await alert!.evaluate((e) => `${e.className} ${e.textContent ?? ''} ${e.querySelector('a')?.getAttribute('href') ?? ''}`)) ?? '',
        new RegExp(`alert-bad .*web, db.*#/surebackup/${con.repoName}/${failed.id}$`),
      );

      // The points page: the tested point carries its newest result, linked to the report.
      await page.goto(`${con.url}#/jobs/${con.repoName}/web/points`);
      const mark = await page.waitForSelector(`.point-table tr[data-point="${webPoint}"] [data-col=surebackup] a[data-tested]`);
      assert.deepEqual(await mark!.evaluate((a) => [a.getAttribute('data-tested'), a.getAttribute('href'), a.textContent]), [
        'failed',
        `#/surebackup/${con.repoName}/${failed.id}`,
        '✗ failed',
      ]);
      await con.screenshot(page, 'surebackup-point-mark');
      con.assertClean(page);
    } finally {
      await page.close();
    }
  },
);
