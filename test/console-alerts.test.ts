// The dashboard's alert for an instant-recovery session whose overlays sit on
// a file system near full (a full one fails the guest's writes): a real serve,
// a session started by the CLI with its overlays on a small tmpfs filled past
// 90%, and the dashboard in Chromium. Root (mount), no QEMU.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { apiGet, startConsole, type Console } from './console-harness.js';
import { cli, MiB, randomBytes, rng } from './helpers.js';

let con: Console;
let mounted: string | undefined;

before(async () => {
  con = await startConsole();
});
after(async () => {
  // The session first (its overlays are on the tmpfs), then the mount, then the server and the browser.
  if (con) await cli(['instant', 'stop', 'tight', '--repo', con.repo]).catch(() => undefined);
  if (mounted) execFileSync('umount', ['-l', mounted]);
  await con?.close();
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
