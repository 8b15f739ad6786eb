/**
 * Instant recovery with the VM's screen, through the console in real
 * Chromium: a point of the tiny boot image (test/fixtures/make-boot-image.sh;
 * two disks, so the guest stays up) is started with boot from the sessions
 * page (TCG: real guests fail under KVM on these machines), is listed, its
 * screen page shows QEMU's display in noVNC's canvas (non-blank pixels read
 * in the page), and it is stopped from the console; its QEMU is gone after.
 * The bridge alone, with a plain `ws` client on the same VM: 401 without a
 * cookie, 403 for a viewer and for a page of another origin, QEMU's RFB
 * version string for an operator, and the socket closed when the session
 * stops. Whatever happens, the after hook kills a QEMU that is left.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Page } from 'puppeteer-core';
import WebSocket from 'ws';
import { apiGet, passwordOf, startConsole, type Console, type Role } from './console-harness.js';
import { cli, tempDir, until } from './helpers.js';

const run = promisify(execFile);
const MAKE_IMAGE = fileURLToPath(new URL('../../test/fixtures/make-boot-image.sh', import.meta.url));
const SESSION = 'screen-vm';

interface ApiSession {
  name: string;
  vm?: { pid: number; state: string; accel: string; vncSocket?: string; serialLog: string };
}

let con: Console;
/** The server's target folder: where operators may migrate to. */
let targets: { dir: string; cleanup: () => Promise<void> };
/** The QEMU the test booted, killed by the after hook if it is still there. */
let vmPid: number | undefined;
/** An operator's bridge socket opened before the stop, to see it closed by the stop. */
let watcher: { ws: WebSocket; closed: Promise<{ code: number; reason: string }> } | undefined;

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

before(async () => {
  targets = await tempDir('lifeboat-console-production-');
  con = await startConsole({ serverArgs: ['--target-folder', targets.dir] });
  // The tiny bootable disk and an empty data disk, backed up as one VM through the CLI.
  const image = join(con.dir, 'boot.img');
  await run('bash', [MAKE_IMAGE, image, join(con.dir, 'build')], { maxBuffer: 1 << 24 });
  const data = join(con.dir, 'data.img');
  await writeFile(data, '');
  await truncate(data, 8 * 1024 * 1024);
  await writeFile(join(con.dir, 'vm.json'), JSON.stringify({ memoryMiB: 256, vcpus: 1 }));
  const created = await cli(['job', 'create', 'vm', '--repo', con.repo, '--disk', image, '--disk', data, '--vm-config', join(con.dir, 'vm.json')]);
  assert.equal(created.code, 0, created.stderr);
  const backup = await cli(['backup', 'vm', '--repo', con.repo]);
  assert.equal(backup.code, 0, backup.stderr);
});

after(async () => {
  watcher?.ws.terminate();
  if (vmPid !== undefined && alive(vmPid)) process.kill(vmPid, 'SIGKILL');
  await con?.close();
  await targets?.cleanup();
});

/** A login cookie of `role`, as the login form would get it. */
async function cookieOf(role: Role): Promise<string> {
  const r = await fetch(`${con.api}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: role, password: passwordOf(role) }),
  });
  assert.equal(r.status, 200, await r.text());
  return r.headers.get('set-cookie')!.split(';')[0]!;
}

const screenUrl = (): string => `${con.api.replace(/^http/, 'ws')}/sessions/${SESSION}/screen`;
const ownOrigin = (): string => new URL(con.url).origin;

type Opened = { ws: WebSocket; first: Promise<Buffer> } | { status: number; code: string };

function openScreen(headers: Record<string, string>, origin: string | undefined): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(screenUrl(), { headers, ...(origin !== undefined ? { origin } : {}) });
    const first = new Promise<Buffer>((res) => ws.once('message', (d: Buffer) => res(d)));
    ws.once('open', () => resolve({ ws, first }));
    ws.once('unexpected-response', (req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, code: (JSON.parse(text) as { code: string }).code });
      });
    });
    ws.once('error', reject);
  });
}

/** Pixels of noVNC's canvas that are not the colour of its first pixel (0 while there is no canvas or frame). */
const drawnPixels = (page: Page): Promise<number> =>
  page.evaluate(() => {
    const canvas = document.querySelector<HTMLCanvasElement>('.screen-view canvas');
    if (!canvas || canvas.width === 0 || canvas.height === 0) return 0;
    const d = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) n++;
    return n;
  });

test('the console starts an instant session with boot, lists it, and shows the VM screen in noVNC', { timeout: 8 * 60_000 }, async () => {
  const page = await con.newPage();
  await con.login(page, 'operator');
  await page.goto(`${con.url}#/sessions`);
  await page.waitForSelector('section.sessions-page[data-ready]');
  // The job made through the CLI reaches the form once the server's catalog has it.
  await until(
    'the job in the start form',
    async () => {
      const has = await page.$('form[data-form=start-session] select[name=job] option[value=vm]');
      if (has) return true;
      await page.goto(`${con.url}#/`);
      await page.goto(`${con.url}#/sessions`);
      await page.waitForSelector('section.sessions-page[data-ready]');
      return undefined;
    },
    60_000,
    1000,
  );
  await page.select('form[data-form=start-session] select[name=job]', 'vm');
  await page.type('form[data-form=start-session] input[name=name]', SESSION);
  await page.click('form[data-form=start-session] input[name=boot]');
  await page.select('form[data-form=start-session] select[name=accel]', 'tcg');
  await page.click('form[data-form=start-session] button[type=submit]');
  await page.waitForSelector(`article[data-session="${SESSION}"]`, { timeout: 120_000 });
  const listed = await apiGet<{ sessions: ApiSession[] }>(page, '/sessions');
  const s = listed.sessions.find((x) => x.name === SESSION);
  assert.ok(s?.vm, JSON.stringify(listed));
  vmPid = s.vm.pid;
  assert.equal(s.vm.accel, 'tcg');
  assert.match(s.vm.vncSocket ?? '', /vm-vnc\.sock$/);
  const card = await page.$eval(`article[data-session="${SESSION}"]`, (e) => (e as HTMLElement).innerText);
  assert.match(card, /running/);
  assert.match(card, /tcg, network none/);
  assert.match(card, /disk0/);
  await con.screenshot(page, 'sessions');

  // noVNC is a chunk of its own, loaded by the screen page alone.
  const chunks: string[] = [];
  page.on('request', (r) => {
    if (/\/chunks\/rfb-[^/]+\.js$/.test(new URL(r.url()).pathname)) chunks.push(r.url());
  });
  await page.click(`article[data-session="${SESSION}"] a[href$="/screen"]`);
  await page.waitForSelector('section.screen-page[data-status=connected]', { timeout: 60_000 });
  assert.equal(chunks.length, 1, `noVNC's chunk requested ${chunks.length} times after the sessions page`);
  const t0 = performance.now();
  const pixels = await until(
    'non-blank pixels in the noVNC canvas',
    async () => ((await drawnPixels(page)) > 500 ? drawnPixels(page) : undefined),
    120_000,
    500,
  );
  console.log(`# ${pixels} pixels drawn in the canvas ${Math.round(performance.now() - t0)} ms after noVNC connected`);
  await con.screenshot(page, 'screen');
  // From the keyboard: the button gives the canvas the focus, where noVNC takes keys for the VM.
  await page.focus('xpath/.//button[normalize-space()="Type into the screen"]');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'CANVAS');
  // Leaving the page closes its connection.
  await page.goto(`${con.url}#/sessions`);
  await page.waitForSelector(`article[data-session="${SESSION}"]`);
  con.assertClean(page);
  await page.close();
});

test('a viewer sees the session listed, and no screen: no link, no connection', async () => {
  assert.ok(vmPid !== undefined, 'this case needs the session the first test started, and that test failed');
  const page = await con.newPage();
  await con.login(page, 'viewer');
  await page.goto(`${con.url}#/sessions`);
  await page.waitForSelector(`article[data-session="${SESSION}"]`);
  assert.equal(await page.$(`article[data-session="${SESSION}"] a[href$="/screen"]`), null);
  const pressable = await page.$$eval('button[data-mutating]:not([disabled])', (els) => els.map((e) => (e as HTMLElement).innerText));
  assert.deepEqual(pressable, []);
  await con.screenshot(page, 'sessions-viewer');
  const sockets: string[] = [];
  page.on('request', (r) => {
    if (r.url().includes('/screen')) sockets.push(r.url());
  });
  await page.goto(`${con.url}#/sessions/${con.repoName}/${SESSION}/screen`);
  await page.waitForSelector('section.screen-page');
  const text = await page.$eval('section.screen-page', (e) => (e as HTMLElement).innerText);
  assert.match(text, /needs the operator or admin role/);
  assert.equal(await page.$('.screen-view'), null);
  await page.waitForNetworkIdle({ idleTime: 300 });
  assert.deepEqual(sockets, []);
  con.assertClean(page);
  await page.close();
});

test('the bridge alone: 401 without a cookie, 403 for a viewer and for another origin, RFB from QEMU for an operator', async () => {
  assert.ok(vmPid !== undefined, 'this case needs the session the first test started, and that test failed');
  const none = await openScreen({}, ownOrigin());
  assert.deepEqual(none, { status: 401, code: 'LFB_ERR_UNAUTHENTICATED' });
  const viewer = await openScreen({ cookie: await cookieOf('viewer') }, ownOrigin());
  assert.deepEqual(viewer, { status: 403, code: 'LFB_ERR_FORBIDDEN' });
  const operator = await cookieOf('operator');
  const foreign = await openScreen({ cookie: operator }, 'http://attacker.example');
  assert.deepEqual(foreign, { status: 403, code: 'LFB_ERR_FORBIDDEN' });
  const ok = await openScreen({ cookie: operator }, ownOrigin());
  assert.ok('ws' in ok, JSON.stringify(ok));
  assert.match((await ok.first).toString(), /^RFB 003\.00\d\n$/);
  // Kept open: the next test stops the session and sees it closed.
  watcher = { ws: ok.ws, closed: new Promise((resolve) => ok.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))) };
});

test('add a disk from the console: hot-plugged into the running VM, listed with its size', { timeout: 2 * 60_000 }, async () => {
  assert.ok(vmPid !== undefined, 'this case needs the session the first test started, and that test failed');
  const page = await con.newPage();
  await con.login(page, 'operator');
  await page.goto(`${con.url}#/sessions`);
  const card = `article[data-session="${SESSION}"]`;
  await page.waitForSelector(card);
  await page.click(`xpath/.//article[@data-session="${SESSION}"]//button[normalize-space()="Add disk"]`);
  const form = `${card} dialog[open] form[data-form=add-disk]`;
  await page.waitForSelector(form);
  await page.$eval(`${form} input[name=size]`, (e) => ((e as HTMLInputElement).value = ''));
  await page.type(`${form} input[name=size]`, '4');
  await page.select(`${form} select[name=unit]`, 'MB');
  await page.type(`${form} input[name=disk-name]`, 'extra');
  await page.click(`${form} button[type=submit]`);
  await page.waitForFunction((sel) => [...document.querySelectorAll(`${sel} tbody td:first-child`)].some((td) => td.textContent === 'extra'), {}, card);
  const { sessions } = await apiGet<{ sessions: (ApiSession & { disks: { name: string; size: number }[] })[] }>(page, '/sessions');
  // 4 MB in whole 512-byte sectors.
  assert.deepEqual(
    sessions.find((s) => s.name === SESSION)!.disks.map((d) => [d.name, d.size]),
    [
      ['disk0', 16 * 1024 * 1024],
      ['disk1', 8 * 1024 * 1024],
      ['extra', 4_000_256],
    ],
  );
  // The guest sees the new disk (it marks each hot-plugged disk and prints its size in sectors).
  const serialLog = sessions.find((s) => s.name === SESSION)!.vm!.serialLog;
  await until('the guest to see the added disk', () => readFile(serialLog, 'utf8').then((t) => (/HOTPLUG vdc 7813/.test(t) ? true : undefined)), 120_000, 500);
  con.assertClean(page);
  await page.close();
});

test(
  'migrate a session from the console: the progress bar follows the copy to the end, Finish makes the final pass; then stop it',
  { timeout: 3 * 60_000 },
  async () => {
    const page = await con.newPage();
    await con.login(page, 'operator');
    await page.goto(`${con.url}#/sessions`);
    await page.waitForSelector('form[data-form=start-session] select[name=job] option[value=vm]');
    await page.select('form[data-form=start-session] select[name=job]', 'vm');
    await page.type('form[data-form=start-session] input[name=name]', 'copy-vm');
    await page.click('form[data-form=start-session] button[type=submit]');
    const card = 'article[data-session="copy-vm"]';
    await page.waitForSelector(card);
    await page.click('xpath/.//article[@data-session="copy-vm"]//button[normalize-space()="Migrate"]');
    const form = `${card} dialog[open] form[data-form=migrate]`;
    await page.waitForSelector(form);
    await page.type(`${form} input[name=to]`, join(targets.dir, 'copy-vm'));
    await page.click(`${form} button[type=submit]`);
    // Without a VM Lifeboat copies the disks; the bar follows the session's event stream until the copy is in sync.
    const total = 16 * 1024 * 1024 + 8 * 1024 * 1024;
    const bar = `${card} .session-migration [role=progressbar]`;
    const progress = async (): Promise<{ now: number; max: number; state: string | null }> =>
      page.$eval(
        `${card} .session-migration`,
        (m, barSel) => {
          const b = document.querySelector(barSel);
          return { now: Number(b?.getAttribute('aria-valuenow')), max: Number(b?.getAttribute('aria-valuemax')), state: m.getAttribute('data-migration') };
        },
        bar,
      );
    await page.waitForSelector(`${card} [data-migration=synced]`, { timeout: 120_000 });
    assert.deepEqual(await progress(), { now: total, max: total, state: 'synced' });
    await con.screenshot(page, 'session-migrating');
    await page.click(`xpath/.//article[@data-session="copy-vm"]//button[normalize-space()="Finish migration"]`);
    await page.waitForSelector(`${card} [data-migration=done]`, { timeout: 120_000 });
    assert.deepEqual(await progress(), { now: total, max: total, state: 'done' });

    // A session without a VM has no screen: its page says why and opens no WebSocket.
    await page.goto(`${con.url}#/sessions/${con.repoName}/copy-vm/screen`);
    await page.waitForSelector('section.screen-page[data-status=unavailable]');
    assert.match(await page.$eval('section.screen-page', (e) => (e as HTMLElement).innerText), /No screen: this session has no VM Lifeboat booted/);
    await page.goto(`${con.url}#/sessions`);
    await page.waitForSelector(`${card} [data-migration=done]`);
    await page.waitForSelector('form[data-form=start-session] select[name=job] option[value=vm]');

    // Dark, as the system says.
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
    await con.screenshot(page, 'sessions-dark');
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);

    // A phone's width: nothing wider than the screen.
    await page.setViewport({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    const wide = await page.evaluate(() =>
      [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
        .slice(0, 8)
        .map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`),
    );
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone: ${wide.join(', ')}`);
    await con.screenshot(page, 'sessions-phone');
    await page.setViewport({ width: 1280, height: 900 });

    await page.click('xpath/.//article[@data-session="copy-vm"]//button[normalize-space()="Stop"]');
    await page.waitForSelector(`${card} dialog[open] [data-action=confirm-stop]`);
    await page.click(`${card} dialog[open] [data-action=confirm-stop]`);
    await page.waitForFunction((sel) => document.querySelector(sel) === null, { timeout: 60_000 }, card);
    con.assertClean(page);
    await page.close();
  },
);

test('stopping the session from the console powers the VM off and closes its screen', { timeout: 3 * 60_000 }, async () => {
  assert.ok(vmPid !== undefined, 'this case needs the session the first test started, and that test failed');
  // Someone watches the screen while another stops the session.
  const screen = await con.newPage();
  await con.login(screen, 'operator');
  await screen.goto(`${con.url}#/sessions/${con.repoName}/${SESSION}/screen`);
  await screen.waitForSelector('section.screen-page[data-status=connected]', { timeout: 60_000 });
  const page = await con.newPage();
  await con.login(page, 'operator');
  await page.goto(`${con.url}#/sessions`);
  const card = `article[data-session="${SESSION}"]`;
  await page.waitForSelector(card);
  await page.click(`xpath/.//article[@data-session="${SESSION}"]//button[normalize-space()="Stop"]`);
  await page.waitForSelector(`${card} dialog[open] [data-action=confirm-stop]`);
  await con.screenshot(page, 'session-stop');
  await page.click(`${card} dialog[open] [data-action=confirm-stop]`);
  await page.waitForFunction((sel) => document.querySelector(sel) === null, { timeout: 120_000 }, card);
  const { sessions } = await apiGet<{ sessions: ApiSession[] }>(page, '/sessions');
  assert.ok(!sessions.some((s) => s.name === SESSION), JSON.stringify(sessions));
  await until('QEMU to be gone', async () => (alive(vmPid!) ? undefined : true), 30_000, 200);
  await screen.waitForSelector('section.screen-page[data-status=disconnected]', { timeout: 10_000 });
  // Then the page asks the server why: the VM stopped, or (a moment later) the session is gone.
  await screen.waitForFunction(
    () => /^Disconnected: (the session was stopped|the VM stopped \(.+\))$/.test(document.querySelector('[data-screen-status]')?.textContent ?? ''),
    { timeout: 20_000 },
  );
  await con.screenshot(screen, 'screen-stopped');
  con.assertClean(screen);
  await screen.close();
  if (watcher) {
    const closed = await watcher.closed;
    assert.equal(closed.code, 1000, JSON.stringify(closed));
  }
  con.assertClean(page);
  await page.close();
});
