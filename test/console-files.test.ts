/**
 * The console's file browser in real Chromium, one appliance: a real serve
 * with a point of a disk that holds an ext4 file system (built with
 * guestfish), opened from the point card; the status while the appliance
 * boots, the volumes, a folder by its button, breadcrumbs back, a file
 * downloaded by its link (the bytes checked), keyboard-reachable.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startConsole, type Console } from './console-harness.js';
import { cli } from './helpers.js';

process.env['LIBGUESTFS_BACKEND'] ??= 'direct';
process.env['LIBGUESTFS_BACKEND_SETTINGS'] ??= 'force_tcg';
process.env['LIBGUESTFS_CACHEDIR'] ??= '/var/tmp';

const MiB = 1024 * 1024;
let con: Console;
let pointId = '';
let bigSha = '';
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

before(async () => {
  con = await startConsole();
  const disk = join(con.dir, 'disk.img');
  const big = join(con.dir, 'report.bin');
  const bytes = randomBytes(MiB + 123);
  bigSha = sha(bytes);
  await writeFile(big, bytes);
  execFileSync('truncate', ['-s', '48M', disk], { timeout: 10_000 });
  execFileSync('guestfish', ['-a', disk], {
    timeout: 300_000,
    input: `run
part-disk /dev/sda gpt
mkfs ext4 /dev/sda1 label:data
mount /dev/sda1 /
mkdir-p /home/ann
upload ${big} /home/ann/report.bin
write /home/ann/notes.txt "hello\\n"
umount-all
`,
  });
  for (const args of [
    ['job', 'create', 'vm', '--repo', con.repo, '--disk', disk],
    ['backup', 'vm', '--repo', con.repo, '--json'],
  ]) {
    const r = await cli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    if (args[0] === 'backup') pointId = (JSON.parse(r.stdout) as { pointId: string }).pointId;
  }
});

after(async () => {
  // SIGTERM: serve closes its file session (its appliance) as it stops; the harness's kill -9 would leave it to the next sweep.
  if (con?.server.proc.exitCode === null) {
    con.server.proc.kill('SIGTERM');
    const t = setTimeout(() => con.server.proc.kill('SIGKILL'), 60_000);
    await con.server.exited;
    clearTimeout(t);
  }
  await con?.close();
});

test('from the point card to a folder and a downloaded file, as a viewer', async () => {
  const page = await con.newPage();
  await con.login(page, 'viewer');
  // Browsing and downloading are reads: a viewer's page sends no change.
  const changes: string[] = [];
  page.on('request', (r) => {
    if (r.method() !== 'GET') changes.push(`${r.method()} ${r.url()}`);
  });
  await page.goto(`${con.url}#/jobs/${con.repoName}/vm/points`, { waitUntil: 'domcontentloaded' });
  // The card grows as the retention plan and the tests arrive: click once the page is settled, or the link may move
  // between Puppeteer's measuring and its click (as it did once under CI's load, and the click opened nothing).
  await page.waitForSelector('.points-page[data-ready]');
  const link = await page.waitForSelector('xpath/.//a[normalize-space()="Browse its files…"]');
  await link!.click();
  // The first request waits for the appliance: the page says so meanwhile (or, if the server refused, says why).
  await page.waitForSelector('.files-opening[role=status], .files-page .error-note', { timeout: 30_000 });
  assert.equal(await page.$eval('.files-page', (e) => e.querySelector('.error-note')?.textContent ?? ''), '', 'the files page shows an error');
  await page.waitForSelector('table[aria-label="Volumes of the point"]', { timeout: 240_000 });
  assert.match(await page.$eval('#files-title', (e) => e.textContent ?? ''), new RegExp(pointId.slice(0, 12)));
  await con.screenshot(page, 'files-volumes');

  // Keyboard: Tab reaches the file system's button, Enter opens it.
  for (let i = 0; i < 60; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => document.activeElement?.getAttribute('aria-label') === 'Browse disk0p1')) break;
  }
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'Browse disk0p1');
  await page.keyboard.press('Enter');
  await page.waitForSelector('table[aria-label="Entries of disk0p1:/"]');
  await (await page.waitForSelector('button[aria-label="Open folder home"]'))!.click();
  await (await page.waitForSelector('button[aria-label="Open folder ann"]'))!.click();
  await page.waitForSelector('table[aria-label="Entries of disk0p1:/home/ann"]');
  const names = await page.$$eval('tr[data-entry]', (rows) => rows.map((r) => r.getAttribute('data-entry')));
  assert.deepEqual(names, ['notes.txt', 'report.bin']);
  assert.deepEqual(await page.$$eval('nav[aria-label=Breadcrumb] > span', (lis) => lis.map((l) => (l.textContent ?? '').replace(/[\s/]+/g, ' ').trim())), [
    'Volumes',
    'disk0p1',
    'home',
    'ann',
  ]);
  await con.screenshot(page, 'files-folder');

  // The download link, clicked: Chromium saves the file; its bytes are the guest's.
  const downloads = join(con.dir, 'downloads');
  await mkdir(downloads, { recursive: true });
  const cdp = await page.createCDPSession();
  // The page has a browser context of its own: downloads are allowed in that context.
  const browserContextId = page.browserContext().id;
  await cdp.send('Browser.setDownloadBehavior', {
    behavior: 'allow',
    downloadPath: downloads,
    eventsEnabled: true,
    ...(browserContextId !== undefined ? { browserContextId } : {}),
  });
  await page.click('a[aria-label="Download report.bin"]');
  const until = Date.now() + 60_000;
  while (!(await readdir(downloads)).includes('report.bin') && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
  assert.equal(sha(await readFile(join(downloads, 'report.bin'))), bigSha);

  // Breadcrumbs lead back.
  await (await page.waitForSelector('xpath/.//nav[@aria-label="Breadcrumb"]//button[normalize-space()="home"]'))!.click();
  await page.waitForSelector('table[aria-label="Entries of disk0p1:/home"]');
  assert.deepEqual(changes, [], 'a viewer browsing files sent a change');
  // Every control has a name a screen reader reads.
  const unnamed = await page.$$eval('button, a', (els) =>
    els.filter((e) => !e.getAttribute('aria-label') && (e as HTMLElement).innerText.trim() === '').map((e) => e.outerHTML.slice(0, 120)),
  );
  assert.deepEqual(unnamed, []);
  con.assertClean(page);
  await page.close();
});
