/**
 * The web console in a real browser (Debian's Chromium, headless) against a
 * real `lifeboat serve`: log in, create a job through the form (the API's
 * refusal shown at its field), run it and watch its progress bar reach the
 * end, the run's result, steps and log; a viewer finds no enabled control
 * that changes anything on any page; a wrong password shows the API's
 * message. No page may log an error or see a failed request.
 * Needs a listening port (the server's, loopback) and Chromium; no root, no QEMU.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'puppeteer-core';
import { openCatalog } from '../src/catalog/index.js';
import { apiGet, type Console, consoleRoutes, startConsole } from './console-harness.js';
import { nbdkitOnFreePort } from './nbdkit.js';

// The server reports progress every 64 MiB read: 8 steps, so the page sees some between start and end even on a fast machine.
const DISK_MIB = 512;
let c: Console;
let disk: string;
/** What the run test made, for the viewer's walk. */
const made: { job?: string; runId?: number; pointId?: string } = {};

/** A raw disk of random bytes: it does not compress, so a backup of it takes long enough for its progress to be seen. */
async function writeRandomDisk(path: string, mib: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    for (let i = 0; i < mib; i += 16) await fh.write(randomBytes(16 * 1024 * 1024));
  } finally {
    await fh.close();
  }
}

before(async () => {
  c = await startConsole();
  disk = join(c.dir, 'vm.img');
  await writeRandomDisk(disk, DISK_MIB);
});
after(async () => {
  await c?.close();
});

async function go(page: Page, hash: string): Promise<void> {
  await page.evaluate((h) => {
    location.hash = h;
  }, hash);
}

const text = (page: Page, selector: string): Promise<string> => page.$eval(selector, (e) => (e as HTMLElement).innerText);

/** A call of the API from the logged-in page (its cookie and CSRF token), as the console itself makes them; returns the status. */
async function callApi(page: Page, method: string, path: string, body?: unknown): Promise<number> {
  return page.evaluate(
    async (method, path, body) => {
      const me = (await (await fetch('/api/v1/me')).json()) as { csrfToken: string };
      const res = await fetch(`/api/v1${path}`, {
        method,
        headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrfToken },
        body: JSON.stringify(body ?? {}),
      });
      await res.text();
      return res.status;
    },
    method,
    path,
    body,
  );
}

/** How many px the page is wider than its window (0: nothing goes sideways), and the first elements that stick out. */
async function overflow(page: Page): Promise<{ px: number; wide: string[] }> {
  // A chart follows the new width when its ResizeObserver fires: give the page a moment to lay out again.
  await page.waitForFunction(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth, { timeout: 5000 }).catch(() => undefined);
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const wide = [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > width + 1)
      .sort((a, b) => b.getBoundingClientRect().right - a.getBoundingClientRect().right)
      .slice(0, 6)
      .map((e) => `${e.tagName.toLowerCase()}.${String(e.className)} ${Math.round(e.getBoundingClientRect().right)}`);
    return { px: document.documentElement.scrollWidth - width, wide };
  });
}

/** The relative luminance (0 black … 1 white) of the page's background and text, and of its first card's background. */
async function schemeColors(page: Page): Promise<{ bg: number; text: number; card: number | null }> {
  return page.evaluate(() => {
    const lum = (c: string): number => {
      const [r = 0, g = 0, b = 0] = (c.match(/[\d.]+/g) ?? []).map(Number);
      return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    };
    const body = getComputedStyle(document.body);
    const card = document.querySelector('.card');
    return { bg: lum(body.backgroundColor), text: lum(body.color), card: card ? lum(getComputedStyle(card).backgroundColor) : null };
  });
}

/** A digest of the capacity chart's pixels: what it drew, in the colours it drew it. */
async function chartPixels(page: Page): Promise<string> {
  return page.evaluate(() => {
    const canvas = document.querySelector<HTMLCanvasElement>('.chart canvas');
    if (!canvas) return '';
    const d = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    // FNV-1a over the bytes, and how many pixels are not transparent.
    let h = 0x811c9dc5;
    let drawn = 0;
    for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i]!, 0x01000193) >>> 0;
    for (let i = 3; i < d.length; i += 4) if (d[i]! > 0) drawn++;
    return `${h.toString(16)}/${drawn}`;
  });
}

/** Dark as the system asks, then light again: the page's colours follow. */
async function assertFollowsScheme(page: Page, what: string): Promise<void> {
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
  const dark = await schemeColors(page);
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
  const light = await schemeColors(page);
  const ok = dark.bg < 0.2 && dark.text > 0.7 && (dark.card ?? 0) < 0.3 && light.bg > 0.8 && light.text < 0.3 && (light.card ?? 1) > 0.8;
  assert.ok(ok, `${what}: dark ${JSON.stringify(dark)}, light ${JSON.stringify(light)}`);
}

/** Every progress bar value the page shows from now on (hash changes keep the document, so the record survives navigation). */
async function recordProgress(page: Page): Promise<void> {
  await page.evaluate(() => {
    const seen: { now: number; max: number; at: number }[] = [];
    (window as unknown as { progressSeen: typeof seen }).progressSeen = seen;
    const note = (): void => {
      for (const bar of document.querySelectorAll('[role=progressbar]')) {
        const now = Number(bar.getAttribute('aria-valuenow'));
        const max = Number(bar.getAttribute('aria-valuemax'));
        if (seen.at(-1)?.now !== now) seen.push({ now, max, at: Math.round(performance.now()) });
      }
    };
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['aria-valuenow'] });
  });
}

test('a wrong password shows the API error on the login page', async () => {
  const page = await c.newPage();
  c.expect(page, { method: 'POST', path: '/api/v1/login', status: 401 });
  await page.goto(c.url, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('input[name=username]');
  await page.type('input[name=username]', 'admin');
  await page.type('input[name=password]', 'not the password');
  await page.click('form button[type=submit]');
  await page.waitForSelector('.error-note');
  assert.match(await text(page, '.error-note'), /wrong user name or password/);
  assert.match(await text(page, '.error-note'), /LFB_ERR_UNAUTHENTICATED/);
  // Still the login page, the password field emptied for another try.
  assert.equal(await page.$eval('input[name=password]', (e) => (e as HTMLInputElement).value), '');
  await c.screenshot(page, 'login-error');
  c.assertClean(page);
  await page.close();
});

test('an admin creates a job through the form, runs it and watches it to the end', async (t) => {
  const page = await c.newPage();
  await c.login(page, 'admin');
  await page.waitForSelector('#alerts-title');
  await c.screenshot(page, 'dashboard-empty');

  // A job whose disk is gone by the time it runs: its failed run and its missing point are the dashboard's alerts.
  const gone = join(c.dir, 'gone.img');
  await writeFile(gone, Buffer.alloc(1024 * 1024));
  assert.equal(await callApi(page, 'POST', `/repositories/${c.repoName}/jobs`, { name: 'gone', disks: [gone], retainPoints: 2 }), 201);
  await rm(gone);
  assert.equal(await callApi(page, 'POST', `/repositories/${c.repoName}/jobs/gone/run`), 202);

  // The form: a bad value comes back from the API and is shown at its field.
  await go(page, '#/jobs/new');
  await page.waitForSelector('input[name=name]');
  await page.waitForSelector('select[name=repo] option');
  await page.type('input[name=name]', 'vm');
  await page.type('textarea[name=disks]', disk);
  await page.$eval('input[name=retain]', (e) => ((e as HTMLInputElement).value = ''));
  await page.type('input[name=retain]', '0');
  c.expect(page, { method: 'POST', path: `/api/v1/repositories/${c.repoName}/jobs`, status: 422 });
  await page.click('form button[type=submit]');
  await page.waitForSelector('.field-invalid .field-error');
  assert.match(await text(page, '.field-invalid'), /Points to keep[\s\S]*retainPoints/);
  await c.screenshot(page, 'job-form-error');
  await page.$eval('input[name=retain]', (e) => ((e as HTMLInputElement).value = ''));
  await page.type('input[name=retain]', '3');
  await page.type('input[name=schedule]', '0 3 * * *');
  await page.click('form button[type=submit]');
  await page.waitForFunction(() => location.hash === '#/jobs/repo/vm');
  await page.waitForSelector('#job-title');
  made.job = 'vm';

  // Run now, then follow the run live until it has succeeded.
  await recordProgress(page);
  const runNow = await page.waitForSelector('xpath/.//button[normalize-space()="Run now"]');
  await runNow!.click();
  await page.waitForFunction(() => /^#\/runs\/\d+$/.test(location.hash));
  made.runId = Number((await page.evaluate(() => location.hash)).split('/').at(-1));
  await page.waitForSelector('#run-title');
  await page.waitForFunction(() => document.querySelector('#run-title .badge')?.textContent === 'succeeded', { timeout: 90_000 });
  const seen = await page.evaluate(() => (window as unknown as { progressSeen: { now: number; max: number; at: number }[] }).progressSeen);
  t.diagnostic(`progress bar values (ms since load): ${seen.map((s) => `${s.now}@${s.at}`).join(' ')}`);
  assert.ok(
    seen.some((s) => s.now > 0 && s.now < s.max),
    `the progress bar showed a value between start and end: ${JSON.stringify(seen)}`,
  );
  assert.equal(seen.at(-1)?.now, seen.at(-1)?.max, `the progress bar reached the end: ${JSON.stringify(seen)}`);

  // The run's result, steps, bytes and log.
  await page.waitForSelector('table[aria-label="Time by step"] tbody tr');
  const stats = await text(page, '.stats');
  assert.match(stats, /result\s+succeeded/);
  assert.match(stats, /bytes read\s+536\.9 MB/);
  assert.ok((await page.$$('table[aria-label="Time by step"] tbody tr')).length >= 2, 'the run has steps');
  assert.ok((await page.$$('.log > div')).length >= 2, 'the run has log lines');
  made.pointId = (await text(page, '.stats div:last-child dd')).trim();
  assert.match(made.pointId, /\S/);
  await c.screenshot(page, 'run');

  // The point the run made is in the job's timeline: one full, the one the run page names.
  await go(page, '#/jobs/repo/vm/points');
  await page.waitForSelector('.points-page[data-ready] .tl-point');
  assert.deepEqual(await page.$$eval('.tl-point', (gs) => gs.map((g) => [g.getAttribute('data-point'), g.getAttribute('data-kind')])), [
    [made.pointId, 'full'],
  ]);

  // A SureBackup job named as the backup job: its run is not in the backup job's history.
  const catalog = await openCatalog(`${join(c.dir, 'repo')}.state`);
  let sureRun: number;
  try {
    const now = new Date().toISOString();
    sureRun = (
      await catalog.createRun({ repo: join(c.dir, 'repo'), job: 'vm', kind: 'surebackup', trigger: 'manual', attempt: 1, retryOf: null, queuedAt: now })
    ).id;
    await catalog.updateRun(sureRun, { state: 'failed', startedAt: now, endedAt: now, errorCode: 'LFB_ERR_SUREBACKUP_FAILED' });
  } finally {
    await catalog.close();
  }

  // The job's page lists the run in its history; the dashboard shows the job's result.
  await go(page, '#/jobs/repo/vm');
  await page.waitForSelector('table[aria-label="Runs of the job"] tbody tr');
  assert.match(await text(page, 'table[aria-label="Runs of the job"] tbody'), new RegExp(`#${made.runId}\\s+succeeded`));
  assert.doesNotMatch(await text(page, 'table[aria-label="Runs of the job"] tbody'), new RegExp(`#${sureRun}\\b`));
  await c.screenshot(page, 'job');

  // Edit: a schedule the API refuses is shown at the schedule field, a good one is saved.
  await go(page, '#/jobs/repo/vm/edit');
  await page.waitForSelector('input[name=schedule]');
  await page.$eval('input[name=schedule]', (e) => ((e as HTMLInputElement).value = ''));
  await page.type('input[name=schedule]', 'every night');
  c.expect(page, { method: 'PATCH', path: `/api/v1/repositories/${c.repoName}/jobs/vm`, status: 422 });
  await page.click('form button[type=submit]');
  await page.waitForSelector('.field-invalid .field-error');
  assert.match(await text(page, '.field-invalid'), /Schedule[\s\S]*not a cron expression/);
  await page.$eval('input[name=schedule]', (e) => ((e as HTMLInputElement).value = ''));
  await page.type('input[name=schedule]', '30 2 * * *');
  await page.click('form button[type=submit]');
  await page.waitForFunction(() => location.hash === '#/jobs/repo/vm');
  await page.waitForFunction(() => document.querySelector('main')?.textContent?.includes('30 2 * * *') === true);

  // A second run, followed from the dashboard: its row in Running has a live progress bar, then it leaves.
  // New data on the disk, so the run stores it all and lasts as long as the first (an unchanged disk is read in half a second).
  await writeRandomDisk(disk, DISK_MIB);
  const again = await page.waitForSelector('xpath/.//button[normalize-space()="Run now"]');
  await again!.click();
  await page.waitForFunction(() => /^#\/runs\/\d+$/.test(location.hash));
  await go(page, '#/');
  await page.waitForFunction(
    () => Number(document.querySelector('table[aria-label="Running and queued runs"] [role=progressbar]')?.getAttribute('aria-valuenow') ?? 0) > 0,
    { timeout: 30_000 },
  );
  await c.screenshot(page, 'dashboard-running');
  await page.waitForFunction(() => document.body.innerText.includes('Nothing is running.'), { timeout: 90_000 });
  // The job listing the dashboard loaded while the run went on is read again.
  await go(page, '#/jobs');
  await go(page, '#/');
  await page.waitForSelector('table[aria-label="Jobs"] tbody tr');
  // Each job's last result, last point's age and next run.
  const vmRow = await page.$$eval('table[aria-label="Jobs"] tbody tr', (trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText.trim())).find((cells) => cells[0] === 'repo/vm'),
  );
  assert.ok(vmRow, 'the dashboard lists repo/vm');
  assert.equal(vmRow[1], 'succeeded');
  assert.match(vmRow[2]!, /^(now|\d+ (s|min) ago)$/, `last point: ${vmRow.join(' | ')}`);
  // Its schedule (30 2 * * *) runs it again within a day.
  assert.match(vmRow[3]!, /^in \d+ (s|min|h)$/, `next run: ${vmRow.join(' | ')}`);
  const alerts = await text(page, '.alerts');
  assert.match(alerts, /repo\/gone: last run failed \(LFB_ERR_[A-Z_]+\)/);
  assert.match(alerts, /repo\/gone: no restore point yet/);
  assert.doesNotMatch(alerts, /repo\/vm/);
  await page.waitForSelector('.chart canvas');
  await c.screenshot(page, 'dashboard');
  await assertFollowsScheme(page, 'the dashboard');
  // The chart is drawn again in the dark colours when the system switches, and in the light ones when it switches back.
  await page.waitForSelector('.chart[data-drawn=light] canvas', { timeout: 5000 });
  const lightChart = await chartPixels(page);
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
  await page.waitForSelector('.chart[data-drawn=dark] canvas', { timeout: 5000 });
  const darkChart = await chartPixels(page);
  assert.notEqual(darkChart, lightChart, 'the chart is drawn in other colours in the dark');
  await c.screenshot(page, 'dashboard-dark');
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
  await page.waitForSelector('.chart[data-drawn=light] canvas', { timeout: 5000 });
  assert.equal(await chartPixels(page), lightChart, 'the chart is drawn as before in the light');
  await page.setViewport({ width: 390, height: 844 });
  const phone = await overflow(page);
  assert.ok(phone.px <= 0, `the dashboard is ${phone.px} px wider than a phone: ${phone.wide.join(', ')}`);
  await c.screenshot(page, 'dashboard-phone');
  await go(page, '#/jobs');
  await page.waitForSelector('table[aria-label="Jobs"] tbody tr');
  await c.screenshot(page, 'jobs');

  // Stop, at a phone's width: a run stopped from its page midway ends stopped. Its disk comes from nbdkit,
  // each read held back 2 s, so the run is still going whenever the click lands (a fast machine finished
  // a run of the plain file before the click, and the page rightly showed it succeeded).
  const slowDisk = await nbdkitOnFreePort(['--filter=delay', 'file', `file=${disk}`, 'delay-read=2']);
  try {
    assert.equal(await callApi(page, 'POST', `/repositories/${c.repoName}/jobs`, { name: 'slow', disks: [`nbd://127.0.0.1:${slowDisk.port}`] }), 201);
    await go(page, '#/jobs/repo/slow');
    const third = await page.waitForSelector('xpath/.//button[normalize-space()="Run now"]');
    await third!.click();
    await page.waitForFunction(() => /^#\/runs\/\d+$/.test(location.hash));
    const stop = await page.waitForSelector('xpath/.//button[normalize-space()="Stop run"]');
    await stop!.click();
    await page
      .waitForFunction(() => document.querySelector('#run-title .badge')?.textContent === 'stopped', { timeout: 30_000 })
      .catch(async (err: unknown) => {
        throw new Error(`the run's badge says ${JSON.stringify(await text(page, '#run-title .badge').catch(() => '(none)'))}, not stopped: ${String(err)}`);
      });
    await c.screenshot(page, 'run-stopped-phone');
  } finally {
    slowDisk.proc.kill('SIGKILL');
  }
  c.assertClean(page);
  await page.close();
});

test('a viewer finds no enabled control that changes anything on any page', async () => {
  assert.ok(made.runId !== undefined, 'this case needs the run the previous test made, and that test failed');
  const page = await c.newPage();
  await c.login(page, 'viewer');
  const changes: string[] = [];
  page.on('request', (r) => {
    if (r.method() !== 'GET') changes.push(`${r.method()} ${r.url()}`);
  });
  const values: Record<string, string> = { repo: c.repoName, job: made.job!, id: String(made.runId), point: made.pointId! };
  const walked: string[] = [];
  for (const route of await consoleRoutes()) {
    const params = [...route.matchAll(/:(\w+)/g)].map((m) => m[1]!);
    // A route of something the test did not make (an instant-recovery session) is left out.
    if (params.some((p) => values[p] === undefined)) continue;
    // The file browser boots an appliance for the point, whose disk of random bytes holds no file system: test/console-files walks it as a viewer.
    if (route.startsWith('/files/')) continue;
    const path = route.replace(/:(\w+)/g, (_m, p: string) => encodeURIComponent(values[p]!));
    await go(page, `#${path}`);
    await page.waitForNetworkIdle({ idleTime: 400, timeout: 15_000 }).catch(() => undefined);
    const controls = await page.$$eval('button, input[type=submit], [role=button]', (els) =>
      els.map((e) => ({
        text: (e as HTMLElement).innerText || e.getAttribute('aria-label') || '',
        mutating: e.hasAttribute('data-mutating'),
        disabled: (e as HTMLButtonElement).disabled === true || e.getAttribute('aria-disabled') === 'true',
        visible: (e as HTMLElement).offsetParent !== null,
      })),
    );
    // Every control has a name a screen reader reads: a label, aria-label(ledby), or its text.
    const unnamed = await page.$$eval('button, input:not([type=hidden]), select, textarea, [role=button]', (els) =>
      els
        .filter((e) => {
          const labels = (e as HTMLInputElement).labels;
          const named = (labels && labels.length > 0) || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby') || e.getAttribute('title');
          const text = e.tagName === 'BUTTON' || e.getAttribute('role') === 'button' ? (e as HTMLElement).innerText.trim() : '';
          return !named && text === '';
        })
        .map((e) => e.outerHTML.slice(0, 120)),
    );
    assert.deepEqual(unnamed, [], `${path}: controls without a label`);
    const unnamedLinks = await page.$$eval('a[href], img', (els) =>
      els
        .filter((e) => (e.tagName === 'IMG' ? !e.hasAttribute('alt') : !e.getAttribute('aria-label') && (e as HTMLElement).innerText.trim() === ''))
        .map((e) => e.outerHTML.slice(0, 120)),
    );
    assert.deepEqual(unnamedLinks, [], `${path}: links without a name or images without alt text`);
    const enabledMutating = controls.filter((x) => x.mutating && !x.disabled);
    assert.deepEqual(enabledMutating, [], `${path}: mutating controls a viewer can press`);
    // The rest must only read: pressing each sends no change to the server (a change the page forgot to mark would).
    const readers = controls.filter((x) => !x.mutating && !x.disabled && x.visible && x.text !== 'Log out');
    for (const r of readers) {
      const handle = await page.$(
        `xpath/.//*[(self::button or @role="button") and (normalize-space()=${JSON.stringify(r.text.trim())} or @aria-label=${JSON.stringify(r.text)})]`,
      );
      if (!handle) continue;
      await handle.click().catch(() => undefined);
      await go(page, `#${path}`);
    }
    await page.waitForNetworkIdle({ idleTime: 300, timeout: 10_000 }).catch(() => undefined);
    assert.deepEqual(changes, [], `${path}: a viewer's click sent a change`);
    const shot = `viewer${path.replace(/[^A-Za-z0-9]+/g, '-').replace(/-$/, '') || '-dashboard'}`;
    await c.screenshot(page, shot);
    // A phone's width: nothing goes sideways (wide tables scroll inside their boxes).
    await page.setViewport({ width: 390, height: 844 });
    const wide = await overflow(page);
    assert.ok(wide.px <= 0, `${path} is ${wide.px} px wider than a phone: ${wide.wide.join(', ')}`);
    await c.screenshot(page, `${shot}-phone`);
    await page.setViewport({ width: 1280, height: 900 });
    await assertFollowsScheme(page, path);
    walked.push(route);
  }
  assert.ok(walked.includes('/') && walked.includes('/jobs/:repo/:job') && walked.includes('/runs/:id'), `walked ${walked.join(', ')}`);

  // Logging out shows the login page again.
  await page.click('xpath/.//button[normalize-space()="Log out"]');
  await page.waitForSelector('input[name=username]');
  c.assertClean(page);
  await page.close();
});

test('the job form sets every setting, shows the API refusing CBT at its field, and clears settings on edit', async () => {
  const page = await c.newPage();
  await c.login(page, 'admin');
  await go(page, '#/jobs/new');
  await page.waitForSelector('select[name=repo] option');
  await page.type('input[name=name]', 'every-setting');
  await page.type('textarea[name=disks]', disk);
  await page.select('select[name=method]', 'forward');
  await page.type('input[name=schedule]', '0 3 1 1 *');
  await page.type('input[name=window]', '20:00-06:00');
  await page.select('select[name=retainBy]', 'days');
  await page.$eval('input[name=retain]', (e) => ((e as HTMLInputElement).value = ''));
  await page.type('input[name=retain]', '14');
  await page.click('input[name=gfs]');
  for (const [field, n] of [
    ['gfsWeekly', '4'],
    ['gfsMonthly', '3'],
    ['gfsYearly', '1'],
  ] as const) {
    await page.$eval(`input[name=${field}]`, (e) => ((e as HTMLInputElement).value = ''));
    await page.type(`input[name=${field}]`, n);
  }
  await page.click('input[name="Active full days-sun"]');
  await page.click('input[name="Synthetic full days-wed"]');
  await page.type('input[name=retries]', '2');
  await page.type('input[name=retryDelay]', '10m');
  // A raw image cannot track changes: the API refuses CBT, and the form shows why at the CBT box.
  await page.click('input[name=cbt]');
  c.expect(page, { method: 'POST', path: `/api/v1/repositories/${c.repoName}/jobs`, status: 422 });
  await page.click('form button[type=submit]');
  await page.waitForSelector('small.field-error');
  assert.match(await text(page, 'small.field-error'), /--cbt needs disks that can track changes/);
  await page.click('input[name=cbt]');
  await page.click('form button[type=submit]');
  await page.waitForFunction(() => location.hash === '#/jobs/repo/every-setting');
  type Def = Record<string, unknown>;
  const pick = (j: Def): Def =>
    Object.fromEntries(
      ['method', 'schedule', 'window', 'retainDays', 'gfs', 'activeFullDays', 'syntheticFullDays', 'retries', 'retryDelay', 'cbt'].map((k) => [k, j[k]]),
    );
  const created = await apiGet<{ job: Def }>(page, `/repositories/${c.repoName}/jobs/every-setting`);
  assert.deepEqual(pick(created.job), {
    method: 'forward',
    schedule: '0 3 1 1 *',
    window: '20:00-06:00',
    retainDays: 14,
    gfs: { weekly: 4, monthly: 3, yearly: 1 },
    activeFullDays: ['sun'],
    syntheticFullDays: ['wed'],
    retries: 2,
    retryDelay: '10m',
    cbt: pick(created.job)['cbt'] === undefined ? undefined : false,
  });

  // Edit: the window emptied and GFS unticked are cleared in the job, the rest kept.
  await go(page, '#/jobs/repo/every-setting/edit');
  await page.waitForSelector('input[name=gfs]:checked');
  assert.equal(await page.$eval('input[name=window]', (e) => (e as HTMLInputElement).value), '20:00-06:00');
  await page.$eval('input[name=window]', (e) => ((e as HTMLInputElement).value = ''));
  await page.type('input[name=window]', ' ');
  await page.click('input[name=gfs]');
  await c.screenshot(page, 'job-form-edit');
  await page.click('form button[type=submit]');
  await page.waitForFunction(() => location.hash === '#/jobs/repo/every-setting');
  const edited = await apiGet<{ job: Def }>(page, `/repositories/${c.repoName}/jobs/every-setting`);
  assert.deepEqual(pick(edited.job), { ...pick(created.job), window: undefined, gfs: undefined });
  c.assertClean(page);
  await page.close();
});

// Last in the file: it locks logins from this address out for the server's remaining life.
test('after repeated wrong passwords the login page shows the rate limit the API answers', async () => {
  const page = await c.newPage();
  await page.goto(c.url, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('input[name=username]');
  await page.type('input[name=username]', 'operator');
  // Five failures are refused as wrong (the fifth locks the address and the name), the sixth as too many.
  for (let i = 1; i <= 6; i++) {
    const status = i <= 5 ? 401 : 429;
    c.expect(page, { method: 'POST', path: '/api/v1/login', status });
    await page.type('input[name=password]', `wrong ${i}`);
    const answered = page.waitForResponse((r) => r.url().endsWith('/api/v1/login'));
    // The keyboard submits the form too.
    await page.keyboard.press('Enter');
    assert.equal((await answered).status(), status);
    await page.waitForFunction(() => (document.querySelector('input[name=password]') as HTMLInputElement | null)?.value === '');
  }
  await page.waitForFunction(() => document.querySelector('.error-note')?.textContent?.includes('LFB_ERR_RATE_LIMITED') === true);
  assert.match(await text(page, '.error-note'), /too many failed logins; try again in \d+ s/);
  await c.screenshot(page, 'login-rate-limited');
  c.assertClean(page);
  await page.close();
});
