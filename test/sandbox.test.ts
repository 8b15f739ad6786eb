// lifeboat sandbox start|list|stop for real (root, TCG): one job backed up
// from H1's good lab image, one `serve`; a sandbox boots it into a lab and a
// --forward reaches its web server from the host's loopback.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BIN, cli, tempDir, until } from './helpers.js';
import { buildLabImage } from './lab-harness.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);

interface Status {
  name: string;
  state: string;
  alive: boolean;
  labId: string;
  netns: string;
  owner: { pid: number; start: string };
  vms: { job: string; point: string; name: string; ip: string; session: string; pid: number; running?: boolean }[];
  forwards: { listen: string; host: string; port: number; job: string; to: string }[];
}

const ctx: { dir: string; repo: string; server?: Server; cleanup?: () => Promise<void> } = { dir: '', repo: '' };
/** Lab ids and keeper pids of every sandbox this file started, for the checks and the final cleanup. */
const ids = new Set<string>();
const keepers = new Set<number>();

const running = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!);
  } catch {
    return false;
  }
};

const sandbox = (args: string[]): ReturnType<typeof cli> => cli(['sandbox', ...args, '--repo', ctx.repo], {}, undefined, 6 * 60_000);

async function start(name: string, extra: string[] = []): Promise<Status> {
  const r = await sandbox(['start', name, '--vm', 'web', '--accel', 'tcg', '--timeout', '180', '--json', ...extra]);
  assert.equal(r.code, 0, `sandbox start ${name}: ${r.stderr}`);
  const s = JSON.parse(r.stdout) as Status;
  ids.add(s.labId);
  keepers.add(s.owner.pid);
  return s;
}

async function sessionNames(): Promise<string[]> {
  const r = await cli(['instant', 'list', '--repo', ctx.repo, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { name: string }[]).map((s) => s.name);
}

async function listed(): Promise<Status[]> {
  const r = await sandbox(['list', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Status[];
}

/** Everything a sandbox could leave: namespace, taps, QEMU, keeper and relay processes, sessions and their folders, records, files. */
async function leftovers(): Promise<string[]> {
  const left: string[] = [];
  const ns = (await run('ip', ['netns', 'list'], { timeout: 10_000 })).stdout;
  const links = (await run('ip', ['-o', 'link', 'show'], { timeout: 10_000 })).stdout;
  for (const id of ids) {
    if (new RegExp(`^lfb-lab-${id}\\b`, 'm').test(ns)) left.push(`namespace lfb-lab-${id}`);
    for (const m of links.matchAll(new RegExp(`^\\d+: (lfb${id}t\\d+)`, 'gm'))) left.push(`tap ${m[1]}`);
  }
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || !running(Number(pid))) continue;
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ');
    if (cmd.includes('qemu-system') && cmd.includes('sbx-') && cmd.includes(ctx.repo)) left.push(`QEMU pid ${pid}`);
    if (cmd.includes('sandbox-keeper.js') && cmd.includes(ctx.repo)) left.push(`keeper pid ${pid}`);
    if (cmd.includes('netns-relay.js') && cmd.includes(ctx.repo)) left.push(`relay pid ${pid}`);
  }
  for (const s of await sessionNames()) if (s.startsWith('sbx-')) left.push(`session ${s}`);
  for (const d of [join(ctx.repo, 'cache', 'instant'), join(ctx.repo, 'instant', 'sessions')])
    for (const e of await readdir(d).catch(() => [] as string[])) if (e.startsWith('sbx-')) left.push(`${d}/${e}`);
  for (const e of await readdir(join(ctx.repo, 'surebackup', 'labs')).catch(() => [] as string[])) left.push(`lab file ${e}`);
  for (const e of await readdir(join(ctx.repo, 'surebackup', 'sandboxes')).catch(() => [] as string[])) if (!e.endsWith('.log')) left.push(`sandbox file ${e}`);
  return left;
}

before(async () => {
  const t = await tempDir('lifeboat-sandbox-');
  ctx.dir = t.dir;
  ctx.cleanup = t.cleanup;
  ctx.repo = join(t.dir, 'repo');
  await writeFile(join(t.dir, 'vm.json'), JSON.stringify({ memoryMiB: 256, vcpus: 1 }));
  const init = await cli(['repo', 'init', ctx.repo]);
  assert.equal(init.code, 0, init.stderr);
  const good = await buildLabImage(join(t.dir, 'lab-good.img'), join(t.dir, 'lab-build'));
  const damaged = await buildLabImage(join(t.dir, 'lab-damaged.img'), join(t.dir, 'lab-build'), { damaged: true });
  for (const [job, image] of [
    ['web', good],
    ['broken', damaged],
  ] as const) {
    const created = await cli(['job', 'create', job, '--repo', ctx.repo, '--disk', image, '--vm-config', join(t.dir, 'vm.json')]);
    assert.equal(created.code, 0, created.stderr);
    const b = await cli(['backup', job, '--repo', ctx.repo]);
    assert.equal(b.code, 0, b.stderr);
  }
  ctx.server = await startServer(ctx.repo, ['--no-portmap']);
});

after(async () => {
  try {
    // Whatever a failed case left: keepers (killed), their labs (through sandbox stop), sessions, the server, namespaces.
    for (const pid of keepers) if (running(pid)) process.kill(pid, 'SIGKILL');
    if (ctx.server) {
      for (const s of await listed().catch(() => [])) await sandbox(['stop', s.name]);
      for (const name of await sessionNames().catch(() => [])) await cli(['instant', 'stop', name, '--repo', ctx.repo]);
      await kill9(ctx.server);
    }
    for (const id of ids) await run('ip', ['netns', 'del', `lfb-lab-${id}`]).catch(() => undefined);
  } finally {
    await ctx.cleanup?.();
  }
});

test(
  'sandbox start|list|stop: a VM from the backup kept running in a lab, reached through --forward from 127.0.0.1; stop removes it all',
  { timeout: 8 * 60_000 },
  async () => {
    // A forward beyond loopback needs --forward-any: refused before anything is made.
    const open = await sandbox(['start', 'wide', '--vm', 'web', '--forward', '0.0.0.0:0=web:80']);
    assert.equal(open.code, 2, open.stderr);
    assert.match(open.stderr, /--forward-any/);
    assert.deepEqual(await leftovers(), []);

    const started = performance.now();
    const s = await start('demo', ['--forward', '127.0.0.1:0=web:80']);
    const startS = (performance.now() - started) / 1000;
    assert.equal(s.state, 'running');
    assert.equal(s.vms.length, 1);
    assert.equal(s.vms[0]!.session, 'sbx-demo-0');
    assert.match(s.vms[0]!.ip, /^10\.99\.0\.\d+$/);
    assert.equal(s.forwards.length, 1);
    assert.ok(s.forwards[0]!.port > 0);
    assert.equal(s.forwards[0]!.to, `${s.vms[0]!.ip}:80`);
    // Its session is the server's, so its screen is in the console's sessions page.
    assert.ok((await sessionNames()).includes('sbx-demo-0'));

    const l = await listed();
    assert.equal(l.length, 1);
    assert.equal(l[0]!.name, 'demo');
    assert.equal(l[0]!.alive, true);
    assert.equal(l[0]!.state, 'running');
    assert.equal(l[0]!.vms[0]!.running, true);
    const text = await sandbox(['list']);
    assert.match(text.stdout, /sandbox demo: running/);
    assert.match(text.stdout, /forward 127\.0\.0\.1:\d+ -> web 10\.99\.0\.\d+:80/);

    // The guest's web server, from the host's loopback through the forward (httpd may start just after the agent).
    const body = await until(
      'the page through the forward',
      async () => {
        try {
          const r = await fetch(`http://127.0.0.1:${s.forwards[0]!.port}/`, { signal: AbortSignal.timeout(5000) });
          return r.status === 200 ? await r.text() : undefined;
        } catch {
          return undefined;
        }
      },
      60_000,
      500,
    );
    assert.match(body, /lifeboat-lab web/);

    const again = await sandbox(['start', 'demo', '--vm', 'web']);
    assert.equal(again.code, 5, again.stderr);
    assert.match(again.stderr, /LFB_ERR_SANDBOX_EXISTS/);

    const stopped = performance.now();
    const stop = await sandbox(['stop', 'demo']);
    assert.equal(stop.code, 0, stop.stderr);
    const stopS = (performance.now() - stopped) / 1000;
    assert.equal(running(s.owner.pid), false, 'the keeper still runs');
    assert.deepEqual(await leftovers(), []);
    assert.deepEqual(await listed(), []);
    const refused = await fetch(`http://127.0.0.1:${s.forwards[0]!.port}/`, { signal: AbortSignal.timeout(5000) }).then(
      () => false,
      () => true,
    );
    assert.equal(refused, true, 'the forward still answers after stop');
    const none = await sandbox(['stop', 'demo']);
    assert.equal(none.code, 3, none.stderr);
    assert.match(none.stderr, /LFB_ERR_SANDBOX_NOT_FOUND/);
    process.stderr.write(`# sandbox start ${startS.toFixed(1)} s, stop ${stopS.toFixed(1)} s\n`);
  },
);

test('a sandbox whose keeper is killed with -9 is removed by the next sandbox start, or by sandbox stop of it', { timeout: 8 * 60_000 }, async () => {
  const a = await start('a', ['--forward', '127.0.0.1:0=web:80']);
  process.kill(a.owner.pid, 'SIGKILL');
  await until('the keeper ends', async () => (running(a.owner.pid) ? undefined : true), 10_000);
  const killed = await leftovers();
  assert.ok(killed.includes(`namespace ${a.netns}`) && killed.includes('session sbx-a-0'), `a killed keeper leaves its lab: ${killed.join(', ')}`);
  const l = await listed();
  assert.equal(l.find((s) => s.name === 'a')?.alive, false);
  // Its VM is the server's session: it runs on until the lab is removed.
  assert.equal(l.find((s) => s.name === 'a')?.vms[0]?.running, true);

  const b = await start('b');
  assert.deepEqual(
    (await listed()).map((s) => s.name),
    ['b'],
  );
  const afterStart = await leftovers();
  for (const gone of [`namespace ${a.netns}`, 'session sbx-a-0', 'sandbox file a.json'])
    assert.ok(!afterStart.includes(gone), `${gone} left after the next start: ${afterStart.join(', ')}`);

  // A VM that dies (its QEMU killed) shows in the list; the sandbox holds the rest.
  process.kill(b.vms[0]!.pid, 'SIGKILL');
  await until('the list shows the VM ended', async () => ((await listed())[0]?.vms[0]?.running === false ? true : undefined), 10_000);
  assert.equal((await listed())[0]!.alive, true);
  assert.match((await sandbox(['list'])).stdout, /session sbx-b-0 {2}\(its VM is not running\)/);

  process.kill(b.owner.pid, 'SIGKILL');
  await until('the keeper ends', async () => (running(b.owner.pid) ? undefined : true), 10_000);
  assert.ok((await leftovers()).includes(`namespace ${b.netns}`));
  const stop = await sandbox(['stop', 'b']);
  assert.equal(stop.code, 0, stop.stderr);
  assert.deepEqual(await leftovers(), []);
});

test('a start that fails says why with its code and leaves nothing: no such job, a VM without heartbeat', { timeout: 8 * 60_000 }, async () => {
  const nojob = await sandbox(['start', 'nojob', '--vm', 'nosuch', '--accel', 'tcg']);
  assert.equal(nojob.code, 3, nojob.stderr);
  assert.match(nojob.stderr, /nosuch/);
  assert.match(nojob.stderr, /LFB_ERR_JOB_NOT_FOUND/);
  assert.deepEqual(await leftovers(), []);

  // A forward's port in use fails the start before any VM boots.
  const held = createServer();
  await new Promise<void>((r) => held.listen(0, '127.0.0.1', r));
  try {
    const port = (held.address() as { port: number }).port;
    const busy = await sandbox(['start', 'busy', '--vm', 'web', '--accel', 'tcg', '--forward', `127.0.0.1:${port}=web:80`]);
    assert.equal(busy.code, 5, busy.stderr);
    assert.match(busy.stderr, /LFB_ERR_PORT_IN_USE/);
    assert.deepEqual(await leftovers(), []);
  } finally {
    held.close();
  }

  // The damaged kernel never brings up its guest agent: no heartbeat within --timeout.
  const broken = await sandbox(['start', 'broken', '--vm', 'broken', '--accel', 'tcg', '--timeout', '20', '--forward', '0=broken:80']);
  assert.equal(broken.code, 1, broken.stderr);
  assert.match(broken.stderr, /broken.*did not pass its heartbeat within 20 s/);
  assert.match(broken.stderr, /LFB_ERR_VM/);
  assert.deepEqual(await leftovers(), []);
  assert.deepEqual(await listed(), []);
});

test('SIGTERM to sandbox start while its VM boots: the keeper removes what it made, exit 143', { timeout: 8 * 60_000 }, async () => {
  const child = spawn(process.execPath, [BIN, 'sandbox', 'start', 'intr', '--repo', ctx.repo, '--vm', 'web', '--accel', 'tcg', '--timeout', '180'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  try {
    // Once its session runs (QEMU started), before the heartbeat.
    const status = await until(
      "the sandbox's VM started",
      async () => {
        const s = JSON.parse(await readFile(join(ctx.repo, 'surebackup', 'sandboxes', 'intr.json'), 'utf8').catch(() => 'null')) as Status | null;
        if (s?.labId) ids.add(s.labId);
        if (s) keepers.add(s.owner.pid);
        return s?.vms[0]?.pid !== undefined && s.state === 'starting' ? s : undefined;
      },
      120_000,
      50,
    );
    child.kill('SIGTERM');
    assert.equal(await exited, 143, stderr);
    assert.match(stderr, /LFB_ERR_INTERRUPTED/);
    assert.equal(running(status.owner.pid), false, 'the keeper still runs');
    assert.deepEqual(await leftovers(), []);
  } finally {
    child.kill('SIGKILL');
  }
});
