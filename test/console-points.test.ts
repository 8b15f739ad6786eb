/**
 * The console's restore points and restore pages in real Chromium: a job
 * with four points made through the real CLI (forward, then an active full:
 * two chains), one of them made damaged by a flipped byte in a stored block
 * and `lifeboat verify`; the timeline shows them with their marks and the
 * damaged one red, the retention plan beside it; a restore through the form
 * writes the point's bytes (refused first outside the operators' target
 * folder, with the server's message); an instant-recovery session started
 * from the restore page is listed by the API with the paths the page shows,
 * and is stopped however the test ends.
 */
import assert from 'node:assert/strict';
import { open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'puppeteer-core';
import { BackupFileReader } from '../src/repository/backup-file.js';
import { apiGet, startConsole, type Console } from './console-harness.js';
import { cli, MiB, randomBytes, rng, tempDir, writeAt } from './helpers.js';

interface ApiPoint {
  id: string;
  kind: string;
  chainId: string | null;
  health: string;
  changeMethod: string | null;
  gfs: string[];
}

let con: Console;
/** The server's one target folder: where operators may restore. */
let targets: { dir: string; cleanup: () => Promise<void> };

before(async () => {
  targets = await tempDir('lifeboat-console-restores-');
  con = await startConsole({ serverArgs: ['--target-folder', targets.dir] });
});
after(async () => {
  await con?.close();
  await targets?.cleanup();
});

/** Flips one bit of a stored (non-zero) block of a backup file. */
async function corruptOneBlock(path: string): Promise<void> {
  const r = await BackupFileReader.open(path);
  const t = r.root.tables[0]!;
  const slot = Array.from({ length: t.count }, (_, i) => i).find((i) => !t.isZero(i));
  const at = slot === undefined ? undefined : t.offset(slot) + Math.floor(t.storedLength(slot) / 2);
  await r.close();
  assert.ok(at !== undefined, `${path} stores no block`);
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = b[0]! ^ 0x10;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

async function run(args: string[], want = 0): Promise<string> {
  const r = await cli(args);
  assert.equal(r.code, want, `lifeboat ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

test('points timeline, retention plan, restore and instant recovery in Chromium', { timeout: 5 * 60_000 }, async () => {
  const rand = rng(15);
  const disk = join(con.dir, 'vm.img');
  await writeFile(disk, randomBytes(rand, 4 * MiB));
  const repo = con.repo;
  await run(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--method', 'forward', '--active-full', 'sun', '--gfs', 'weekly=2,monthly=1']);
  await run(['backup', 'vm', '--repo', repo]);
  await writeAt(disk, randomBytes(rand, 300_000), 1 * MiB);
  await run(['backup', 'vm', '--repo', repo]);
  await run(['backup', 'vm', '--repo', repo, '--active-full']);
  await writeAt(disk, randomBytes(rand, 300_000), 2 * MiB + 4096);
  await run(['backup', 'vm', '--repo', repo]);
  const newestBytes = await readFile(disk);
  // A reverse-incremental job: its older point is a rollback.
  const rvDisk = join(con.dir, 'rv.img');
  await writeFile(rvDisk, randomBytes(rand, 1 * MiB));
  await run(['job', 'create', 'rv', '--repo', repo, '--disk', rvDisk, '--method', 'reverse']);
  await run(['backup', 'rv', '--repo', repo]);
  await writeAt(rvDisk, randomBytes(rand, 100_000), 4096);
  await run(['backup', 'rv', '--repo', repo]);

  // The first chain's increment gets a flipped byte; verify finds it and marks the point damaged.
  const jobDir = join(repo, 'jobs', 'vm');
  // In the order they were written: names start with the second they were made in, and four backups of a small disk share seconds.
  const names = (await readdir(jobDir)).filter((n) => /\.(vbk|vib)$/.test(n));
  const written = new Map(await Promise.all(names.map(async (n) => [n, (await stat(join(jobDir, n))).mtimeMs] as const)));
  const files = names.sort((a, b) => written.get(a)! - written.get(b)!);
  assert.equal(files.length, 4, files.join(' '));
  assert.match(files[1]!, /\.vib$/);
  await corruptOneBlock(join(jobDir, files[1]!));
  await run(['verify', 'vm', '--repo', repo, '--all'], 4);

  const page = await con.newPage();
  let session: string | undefined;
  try {
    await con.login(page, 'operator');
    // The dashboard, where the login lands, alerts on the damaged point.
    const damagedAlert = await page.waitForSelector(`xpath/.//ul[@class="alerts"]/li[contains(., "${con.repoName}/vm: ") and contains(., "damaged point")]`);
    assert.match((await damagedAlert!.evaluate((e) => e.className)) ?? '', /alert-bad/);
    const listed = await apiGet<{ points: ApiPoint[] }>(page, `/repositories/${con.repoName}/jobs/vm/points`);
    const points = listed.points;
    assert.deepEqual(
      points.map((p) => p.kind),
      ['full', 'increment', 'full', 'increment'],
    );
    assert.equal(new Set(points.map((p) => p.chainId)).size, 2);
    assert.deepEqual(
      points.map((p) => p.health),
      ['ok', 'damaged', 'ok', 'ok'],
    );

    // The timeline: one mark per point, shaped by kind, the damaged one red; two chains.
    await page.goto(`${con.url}#/jobs/${con.repoName}/vm/points`);
    await page.waitForSelector('.points-page[data-ready] .tl-point');
    const marks = await page.$$eval('.tl-point', (gs) =>
      gs.map((g) => {
        const shape = g.querySelector('.tl-mark')!;
        const fill = getComputedStyle(shape).fill;
        return { id: g.getAttribute('data-point'), kind: g.getAttribute('data-kind'), health: g.getAttribute('data-health'), tag: shape.tagName, fill };
      }),
    );
    assert.deepEqual(
      marks.map((m) => [m.id, m.kind, m.health, m.tag]),
      points.map((p) => [p.id, p.kind, p.health, p.kind === 'full' ? 'rect' : 'circle']),
    );
    const rgb = (s: string): number[] => (s.match(/\d+/g) ?? []).map(Number);
    const isRed = (s: string): boolean => {
      const [r = 0, g = 0, b = 0] = rgb(s);
      return r > 150 && r - g > 80 && r - b > 80;
    };
    assert.ok(isRed(marks[1]!.fill), `damaged point's fill ${marks[1]!.fill}`);
    for (const m of [marks[0]!, marks[2]!, marks[3]!]) assert.ok(!isRed(m.fill), `healthy point's fill ${m.fill}`);
    // Each mark's size follows the bytes its file stores: a full of 4 MiB of random bytes is larger than an increment of 300 kB.
    const areas = await page.$$eval('.tl-point .tl-mark', (ms) => ms.map((m) => (m as SVGGraphicsElement).getBBox()).map((b) => b.width * b.height));
    assert.ok(areas[0]! > 2 * areas[1]! && areas[2]! > 2 * areas[3]!, `mark areas ${areas.join(' ')}`);
    // GFS flags as letters above their points, as the API gives them; some point has one.
    const letters = await page.$$eval('.tl-point', (gs) => gs.map((g) => [...g.querySelectorAll('.tl-gfs')].map((t) => t.textContent).join('')));
    const letter: Record<string, string> = { weekly: 'W', monthly: 'M', yearly: 'Y' };
    assert.deepEqual(
      letters,
      points.map((p) => p.gfs.map((g) => letter[g]).join('')),
    );
    assert.ok(
      letters.some((l) => l !== ''),
      `a GFS flag shown: ${JSON.stringify(points.map((p) => p.gfs))}`,
    );
    assert.equal(await page.$$eval('.tl-band-0, .tl-band-1', (b) => b.length), 2);
    assert.match(await page.$eval('[data-summary]', (e) => e.textContent ?? ''), /4 points in 2 chains.*1 damaged/);

    // The table says the same in words: kind, health, and how each point's changes were found.
    const rows = await page.$$eval('.point-table tbody tr', (trs) =>
      trs.map((tr) => ({
        id: tr.getAttribute('data-point'),
        cls: tr.className,
        cells: [...tr.querySelectorAll('td')].map((td) => td.textContent ?? ''),
        changes: tr.querySelector('[data-col=changes]')?.textContent ?? '',
      })),
    );
    assert.deepEqual(
      rows.map((r) => r.id),
      [...points].reverse().map((p) => p.id),
    );
    const damagedRow = rows.find((r) => r.id === points[1]!.id)!;
    assert.match(damagedRow.cls, /row-damaged/);
    assert.match(damagedRow.cells.join(' | '), /damaged/);
    for (const r of rows) {
      const p = points.find((x) => x.id === r.id)!;
      assert.match(r.changes, p.changeMethod === 'full' ? /full read/ : p.changeMethod === 'cbt' ? /CBT/ : /hash/, `changes of ${p.kind} ${p.id}`);
    }

    // The retention plan beside it: every reason the API gives is shown.
    const plan = await apiGet<{ kept: { id: string; reason: string }[]; actions: unknown[] }>(page, `/repositories/${con.repoName}/jobs/vm/retention-plan`);
    const planText = await (await page.waitForSelector('.retention-plan'))!.evaluate((e) => e.textContent ?? '');
    assert.ok(plan.kept.length > 0);
    for (const k of plan.kept) assert.ok(planText.includes(k.reason), `plan shows "${k.reason}"`);

    // Keyboard: the timeline is one stop; Home selects the oldest point, the arrow the next, and the card follows.
    await page.focus('.timeline');
    await page.keyboard.press('Home');
    await page.keyboard.press('ArrowRight');
    assert.equal(await page.$eval('.point-card', (e) => e.getAttribute('data-point')), points[1]!.id);
    assert.match(await page.$eval('.point-card', (e) => e.textContent ?? ''), /damaged/);
    assert.equal(await page.$eval('.timeline', (e) => e.getAttribute('aria-activedescendant')), 'tl-point-1');
    await con.screenshot(page, 'points');
    // On a phone's width the page stacks and does not grow sideways (the timeline and the table scroll inside their boxes).
    await page.setViewport({ width: 390, height: 844 });
    await page
      .waitForFunction(() => document.documentElement.scrollWidth <= 391, { timeout: 5000 })
      .catch(async () => {
        assert.fail(`the points page is ${await page.evaluate(() => document.documentElement.scrollWidth)} px wide at 390 px`);
      });
    await con.screenshot(page, 'points-phone');
    await page.setViewport({ width: 1280, height: 900 });
    // Dark, as the system asks: the damaged point is still red, the others not.
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
    const darkFills = await page.$$eval('.tl-point .tl-mark', (ms) => ms.map((m) => getComputedStyle(m).fill));
    assert.deepEqual(darkFills.map(isRed), [false, true, false, false], darkFills.join(' '));
    await con.screenshot(page, 'points-dark');
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);

    // The reverse-incremental job: its full is the newest point, the older one a rollback drawn as a diamond.
    await page.goto(`${con.url}#/jobs/${con.repoName}/rv/points`);
    await page.waitForSelector('.points-page[data-ready] .tl-point');
    assert.deepEqual(await page.$$eval('.tl-point', (gs) => gs.map((g) => [g.getAttribute('data-kind'), g.querySelector('.tl-mark')!.tagName])), [
      ['rollback', 'path'],
      ['full', 'rect'],
    ]);
    await con.screenshot(page, 'points-reverse');
    await page.goto(`${con.url}#/jobs/${con.repoName}/vm/points`);
    await page.waitForSelector('.points-page[data-ready] .tl-point');
    await page.focus('.timeline');

    // Restore the newest point through the form: outside the target folder the server refuses and the page says why.
    await page.keyboard.press('End');
    await Promise.all([page.waitForSelector('.restore-page[data-ready] form[data-form=restore]'), page.keyboard.press('Enter')]);
    assert.match(page.url(), new RegExp(`#/restore/${con.repoName}/vm/${points[3]!.id}$`));
    // File-level recovery: a link to this point's file browser, the next keyboard stop after the instant-recovery form.
    await page.focus('form[data-form=instant] button[type=submit]');
    await page.keyboard.press('Tab');
    const flr = await page.evaluate(() => {
      const a = document.activeElement;
      return {
        inFlr: a?.closest('[aria-labelledby=flr-title]') !== null,
        tag: a?.tagName,
        href: a?.getAttribute('href'),
        text: (a as HTMLElement | null)?.innerText,
      };
    });
    assert.deepEqual(
      { inFlr: flr.inFlr, tag: flr.tag, href: flr.href },
      { inFlr: true, tag: 'A', href: `#/files/${con.repoName}/vm/${points[3]!.id}` },
      `the file-level recovery link: ${JSON.stringify(flr)}`,
    );
    assert.match(flr.text ?? '', /\S/, 'the link has a name');
    con.expect(page, { method: 'POST', path: '/jobs/vm/restore', status: 403 });
    await page.type('form[data-form=restore] input[name=to]', join(con.dir, 'elsewhere.img'));
    await page.click('form[data-form=restore] button[type=submit]');
    const refused = await page.waitForSelector('.error-note');
    assert.match((await refused!.evaluate((e) => e.textContent)) ?? '', /outside the folders operators may write to.*LFB_ERR_FORBIDDEN/);

    const out = join(targets.dir, 'vm-restored.img');
    await page.$eval('form[data-form=restore] input[name=to]', (e) => ((e as HTMLInputElement).value = ''));
    await page.type('form[data-form=restore] input[name=to]', out);
    await page.click('form[data-form=restore] button[type=submit]');
    await page.waitForSelector('[data-result=restore]', { timeout: 60_000 });
    assert.ok((await readFile(out)).equals(newestBytes), 'the restored disk has the point’s bytes');
    await con.screenshot(page, 'restore');

    // Instant recovery from the same page: the session the API lists, with the paths the page shows.
    await page.type('form[data-form=instant] input[name=name]', 'console-ir');
    session = 'console-ir';
    await page.click('form[data-form=instant] button[type=submit]');
    await page.waitForSelector('[data-result=session] .session-disk', { timeout: 60_000 });
    const shown = await page.$$eval('[data-result=session] .path-row code', (cs) => cs.map((c) => c.textContent ?? ''));
    const sessions = await apiGet<{ sessions: { name: string; pointId: string; disks: { nfsPath: string; nbdExport: string }[] }[] }>(page, '/sessions');
    const s = sessions.sessions.find((x) => x.name === 'console-ir');
    assert.ok(s, `GET /sessions lists console-ir: ${JSON.stringify(sessions)}`);
    assert.equal(s.pointId, points[3]!.id);
    assert.deepEqual(
      shown,
      s.disks.flatMap((d) => [d.nfsPath, d.nbdExport]),
    );
    assert.equal(await page.$$eval('[data-result=session] .path-row button', (b) => b.length), 2 * s.disks.length, 'a copy button for each path');
    await con.screenshot(page, 'restore-instant');
    con.assertClean(page);
  } finally {
    if (session !== undefined) await stopSession(page, session);
    await page.close();
  }
});

/** Stops the session through the API with the page's cookie and CSRF token; if the page cannot (a test that broke it), through the CLI. */
async function stopSession(page: Page, name: string): Promise<void> {
  const status = await page
    .evaluate(async (n) => {
      const me = (await (await fetch('/api/v1/me', { credentials: 'same-origin' })).json()) as { csrfToken?: string };
      const r = await fetch(`/api/v1/sessions/${n}`, { method: 'DELETE', credentials: 'same-origin', headers: { 'X-CSRF-Token': me.csrfToken ?? '' } });
      return r.status;
    }, name)
    .catch(() => 0);
  // 404: it never started.
  if (status === 204 || status === 404) return;
  const r = await cli(['instant', 'stop', name, '--repo', con.repo]);
  assert.equal(r.code, 0, `instant stop ${name}: ${r.stdout}${r.stderr}`);
}
