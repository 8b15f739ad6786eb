// The dashboard's alerts, each made for real and seen in Chromium: an
// instant-recovery session whose overlays sit on a file system near full (a
// full one fails the guest's writes; a session started by the CLI with its
// overlays on a small tmpfs filled past 90%), a run that ended with a warning
// (CBT asked, the increment found its changes by hash), a job whose newest
// point is three days old (a backup the CLI made with LIFEBOAT_NOW three days
// back, before the server started), and the repository itself near full (it lives on a tmpfs of its own, filled
// past 90% at the end). One real serve. Root (mount), no QEMU.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ElementHandle, Page } from 'puppeteer-core';
import { apiGet, startConsole, type Console } from './console-harness.js';
import { cli, MiB, randomBytes, rng } from './helpers.js';

const DAY_MS = 24 * 3600 * 1000;

let con: Console;
let mounted: string | undefined;
/** The tmpfs the repository and the server's state live on. */
let repoFs: string | undefined;

before(async () => {
  const fsDir = await mkdtemp(join(tmpdir(), 'lifeboat-alerts-repo-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', fsDir]);
  repoFs = fsDir;
  con = await startConsole({
    repo: join(fsDir, 'repo'),
    // A job whose one point was made three days ago: by the CLI with its clock pinned, before the server starts (with a server
    // running, the CLI hands its backup to the server, whose clock is the real one).
    beforeServe: async (repo, dir) => {
      const disk = join(dir, 'old.img');
      await writeFile(disk, randomBytes(rng(15), MiB));
      assert.equal((await cli(['job', 'create', 'old', '--repo', repo, '--disk', disk])).code, 0);
      const backup = await cli(['backup', 'old', '--repo', repo], { LIFEBOAT_NOW: new Date(Date.now() - 3 * DAY_MS).toISOString() });
      assert.equal(backup.code, 0, backup.stderr);
    },
  });
});
after(async () => {
  // The session first (its overlays are on the tmpfs), then the mount, then the server and the browser, then the repository's tmpfs.
  if (con) await cli(['instant', 'stop', 'tight', '--repo', con.repo]).catch(() => undefined);
  if (mounted) execFileSync('umount', ['-l', mounted]);
  await con?.close();
  if (repoFs) {
    execFileSync('umount', ['-l', repoFs]);
    await rm(repoFs, { recursive: true, force: true });
  }
});

test(
  'a session whose overlays sit on a file system under 10% free is a dashboard alert; the sessions page shows the free space',
  { timeout: 3 * 60_000 },
  async () => {
    const disk = join(con.dir, 'vm.img');
    await writeFile(disk, randomBytes(rng(21), 2 * MiB));
    for (const args of [
      ['job', 'create', 'vm', '--repo', con.repo, '--disk', disk],
      ['backup', 'vm', '--repo', con.repo],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 0, r.stderr);
    }
    const cache = join(con.dir, 'overlays');
    await mkdir(cache);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', cache]);
    mounted = cache;
    // 15 of 16 MiB taken: about 6% free.
    await writeFile(join(cache, 'ballast'), Buffer.alloc(15 * MiB, 1));
    const started = await cli(['instant', 'start', 'vm', '--repo', con.repo, '--point', 'latest', '--name', 'tight', '--cache-dir', cache]);
    assert.equal(started.code, 0, started.stderr);

    const page = await con.newPage();
    await con.login(page, 'operator');
    const alert = await page.waitForSelector('xpath/.//li[contains(., "session tight") and contains(., "near full")]', { timeout: 30_000 });
    assert.ok(alert, 'the dashboard alerts on the session');
    assert.match((await alert.evaluate((e) => e.className)) ?? '', /alert-bad/);
    await con.screenshot(page, 'dashboard-overlay-alert');

    await page.goto(`${con.url}#/sessions`);
    const free = await page.waitForSelector('[data-session=tight] [data-stat=overlay-free]');
    assert.match((await free!.evaluate((e) => `${e.className} ${e.textContent ?? ''}`)) ?? '', /alert-bad .*[kM]B/);

    // Real NBD clients read the session's disk and write 64 KiB to it: the card shows read and write rates and the overlay's size.
    const { sessions } = await apiGet<{ sessions: { name: string; disks: { nbdExport: string }[] }[] }>(page, '/sessions');
    const uri = `nbd://127.0.0.1:${con.server.nbdPort}/${sessions.find((s) => s.name === 'tight')!.disks[0]!.nbdExport}`;
    const stat = (name: string): Promise<string> => page.$eval(`[data-session=tight] [data-stat=${name}]`, (e) => e.textContent ?? '');
    const rate = /^[1-9][\d.]* [kM]?B\/s$/;
    const until = Date.now() + 30_000;
    let seen = { read: '', write: '' };
    // The rates are the difference of two readings of the list (every 3 s): keep reading until both show.
    while (Date.now() < until) {
      // The same 64 KiB each time: the overlay on its nearly full tmpfs does not grow past them.
      execFileSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 64k', uri], { timeout: 30_000 });
      execFileSync('nbdcopy', [uri, 'null:'], { timeout: 30_000 });
      seen = { read: await stat('read'), write: await stat('write') };
      if (rate.test(seen.read) && rate.test(seen.write)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(rate.test(seen.read) && rate.test(seen.write), `read and write rates ${JSON.stringify(seen)}`);
    assert.match(await stat('overlay'), /^[1-9][\d.]* [kM]?B$/);
    await con.screenshot(page, 'sessions-io');
    con.assertClean(page);
    await page.close();
  },
);

/** The dashboard's alert whose text matches `text` exactly: its element, its link (null for none) and whether it is marked bad. */
async function alertOf(page: Page, text: string): Promise<{ link: string | null; bad: boolean }> {
  const li = (await page
    .waitForSelector(`xpath/.//ul[@class="alerts"]/li[normalize-space()=${JSON.stringify(text)}]`, { timeout: 30_000 })
    .catch(async (err: unknown) => {
      const shown = await page.$$eval('ul.alerts li', (items) => items.map((e) => e.textContent ?? ''));
      const { jobs } = await apiGet<{ jobs: { job: { name: string }; lastPoint: unknown }[] }>(page, '/jobs');
      const points = jobs.map((j) => ({ job: j.job.name, lastPoint: j.lastPoint }));
      throw new Error(`no alert "${text}"; the dashboard shows ${JSON.stringify(shown)}; GET /jobs: ${JSON.stringify(points)}`, { cause: err });
    })) as ElementHandle<HTMLLIElement>;
  return li.evaluate((e) => ({ link: e.querySelector('a')?.getAttribute('href') ?? null, bad: e.classList.contains('alert-bad') }));
}

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]);

test(
  'a run that ended with a warning, a job whose newest point is three days old and a repository under 10% free are dashboard alerts with their links',
  { timeout: 4 * 60_000 },
  async () => {
    const rand = rng(16);
    // A job with CBT, made on a qcow2 image later replaced by raw data: its first point is a full, its increment finds its changes by hash.
    const cbtDisk = join(con.dir, 'was-qcow2.img');
    await writeFile(cbtDisk, Buffer.concat([QCOW2_MAGIC, Buffer.alloc(MiB - 4)]));
    const created = await cli(['job', 'create', 'cbt', '--repo', con.repo, '--disk', cbtDisk, '--cbt']);
    assert.equal(created.code, 0, created.stderr);
    await writeFile(cbtDisk, randomBytes(rand, MiB));
    const full = await cli(['backup', 'cbt', '--repo', con.repo]);
    assert.equal(full.code, 0, full.stderr);

    // The increment through the server (a run ends 'warning' only there; the CLI's backup above was handed to it too): Run now on
    // the job's page, as an operator.
    const page = await con.newPage();
    await con.login(page, 'operator');
    await page.goto(`${con.url}#/jobs/${con.repoName}/cbt`);
    const runNow = await page.waitForSelector('xpath/.//button[normalize-space()="Run now"]');
    await runNow!.click();
    await page.waitForFunction(() => /^#\/runs\/\d+$/.test(location.hash));
    const runId = Number((await page.evaluate(() => location.hash)).split('/').at(-1));
    await page.waitForFunction(() => document.querySelector('#run-title .badge')?.textContent === 'warning', { timeout: 90_000 });

    // The repository's file system past 90% full: all but 5% of it taken.
    const fs = await statfs(repoFs!);
    const total = fs.blocks * fs.bsize;
    await writeFile(join(repoFs!, 'ballast'), Buffer.alloc(fs.bavail * fs.bsize - Math.ceil(total * 0.05), 1));

    await page.goto(con.url);
    const repo = con.repoName;
    assert.deepEqual(await alertOf(page, `${repo}/cbt: last run ended with a warning`), { link: `#/runs/${runId}`, bad: false });
    assert.deepEqual(await alertOf(page, `${repo}/old: no point in 24 h (last 3 d ago)`), { link: `#/jobs/${repo}/old`, bad: false });
    const near = await page.waitForSelector(`xpath/.//ul[@class="alerts"]/li[starts-with(normalize-space(), "repository ${repo} is near full: ")]`);
    const nearText = await near!.evaluate((e) => e.textContent ?? '');
    assert.match(nearText, /^repository \S+ is near full: [\d.]+ [kM]B free of (6[0-9]|7[0-9])(\.\d+)? MB$/);
    assert.match((await near!.evaluate((e) => e.className)) ?? '', /alert-bad/);
    // The job with a fresh point and a run that succeeded is no alert of its own.
    assert.equal(await page.$(`xpath/.//ul[@class="alerts"]/li[contains(., "${repo}/cbt: no point")]`), null);
    await con.screenshot(page, 'dashboard-alerts');

    // The warning's link opens its run.
    await page.click(`ul.alerts a[href="#/runs/${runId}"]`);
    await page.waitForFunction(() => document.querySelector('#run-title .badge')?.textContent === 'warning');
    con.assertClean(page);
    await page.close();
  },
);
