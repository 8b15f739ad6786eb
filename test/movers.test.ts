// Data movers on other "hosts": two network namespaces, each with its own NBD source (qemu-nbd) on its own loopback
// (nbd://127.0.0.1:10809 names a different disk in each), reaching the server only over a bridge at 10.231.77.1 (HTTPS,
// a certificate for that address); the repository is a folder both see, the catalog PostgreSQL. Two movers of group
// "ga" in the first namespace, one of "gb" in the second. Each job's backups land on a mover of its group (a backup
// run anywhere else would read the other namespace's disk: the restored bytes say which one was read); a mover killed
// with -9 mid-backup loses the task to the other mover of its group, the run succeeds there, no half point is left,
// and every point restores bit-exact. Namespaces, bridge, NBD servers, movers, server and PostgreSQL are removed in
// every outcome.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { startPostgresCluster, type PostgresCluster } from '../src/testing/postgres-cluster.js';
import { BIN, cli, randomBytes, rng, tempDir, until } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const ID = String(process.pid % 100000);
const BRIDGE = `lbr${ID}`;
const HOST_IP = '10.231.77.1';
const NS = { a: { ns: `lfb-mv-a-${ID}`, ip: '10.231.77.2' }, b: { ns: `lfb-mv-b-${ID}`, ip: '10.231.77.3' } } as const;
const NBD_URL = 'nbd://127.0.0.1:10809';

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let pg: PostgresCluster | undefined;
let dir = '';
let removeDir: (() => Promise<void>) | undefined;
const children: ChildProcess[] = [];

function tearDownNetwork(): void {
  for (const { ns } of Object.values(NS)) {
    try {
      ip('netns', 'del', ns);
    } catch {
      // not made
    }
  }
  try {
    ip('link', 'del', BRIDGE);
  } catch {
    // not made
  }
}

before(async () => {
  tearDownNetwork();
  ip('link', 'add', BRIDGE, 'type', 'bridge');
  ip('addr', 'add', `${HOST_IP}/24`, 'dev', BRIDGE);
  ip('link', 'set', BRIDGE, 'up');
  for (const [k, { ns, ip: addr }] of Object.entries(NS)) {
    ip('netns', 'add', ns);
    ip('link', 'add', `lv${k}${ID}`, 'type', 'veth', 'peer', 'name', `lp${k}${ID}`);
    ip('link', 'set', `lp${k}${ID}`, 'netns', ns);
    ip('link', 'set', `lv${k}${ID}`, 'master', BRIDGE, 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', `lp${k}${ID}`);
    ip('-n', ns, 'link', 'set', `lp${k}${ID}`, 'up');
  }
  pg = await startPostgresCluster();
  ({ dir, cleanup: removeDir } = await tempDir('lfb-movers-'));
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
  tearDownNetwork();
  await pg?.stop();
  await removeDir?.();
});

/** A process in a namespace, killed at the end whatever happens; its output is kept. */
function inNs(ns: string, cmd: string, args: string[]): { proc: ChildProcess; log: () => string; exited: Promise<void> } {
  const proc = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, log: () => out, exited: new Promise((r) => proc.once('exit', () => r())) };
}

/** One HTTPS call to the server's API, trusting the test's certificate. */
async function api<T>(base: string, token: string, ca: Buffer, method: string, path: string, body?: unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const headers = { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
    const req = request(`${base}${path}`, { method, ca, headers }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => (res.statusCode! < 300 ? resolve(JSON.parse(text) as T) : reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`))));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

interface RunView {
  id: number;
  state: string;
  errorMessage: string | null;
  pointId: string | null;
}

test(
  'backups run on the movers of their job’s group, each reading its own namespace’s disk; a mover killed mid-backup loses it to the other',
  { timeout: 5 * 60_000 },
  async () => {
    // Two disks told apart by their bytes.
    const disks = { a: randomBytes(rng(71), 64 * 1024 * 1024), b: randomBytes(rng(72), 24 * 1024 * 1024) };
    for (const [k, { ns }] of Object.entries(NS)) {
      const img = join(dir, `disk-${k}.img`);
      await writeFile(img, disks[k as 'a' | 'b']);
      // Reads at 32 MB/s (a throttle of qemu's block layer): a backup takes long enough to be killed in its middle.
      inNs(ns, 'qemu-nbd', [
        '--read-only',
        '--persistent',
        '--bind',
        '127.0.0.1',
        '--port',
        '10809',
        '--object',
        'throttle-group,id=slow,x-bps-read=33554432',
        '--image-opts',
        `driver=throttle,throttle-group=slow,file.driver=raw,file.file.driver=file,file.file.filename=${img}`,
      ]);
    }
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1'].concat([
        '-subj',
        '/CN=lifeboat-movers-test',
        '-addext',
        `subjectAltName=IP:${HOST_IP}`,
      ]),
      { stdio: 'ignore' },
    );
    const ca = await readFile(cert);

    const repo = join(dir, 'repo');
    const catalog = await pg!.createDatabase('movers');
    const ok = async (args: string[], input?: string): Promise<string> => {
      const r = await cli(args, {}, input);
      assert.equal(r.code, 0, `lifeboat ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    await ok(['repo', 'init', repo]);
    await ok(['job', 'create', 'alpha', '--repo', repo, '--disk', NBD_URL, '--mover', 'ga']);
    await ok(['job', 'create', 'beta', '--repo', repo, '--disk', NBD_URL, '--mover', 'gb']);
    // The test's own calls and the movers of groups on an operator's token; the mover "solo" (no group) on the token of a
    // user of role mover named as it, which may do nothing else.
    await ok(['job', 'create', 'gamma', '--repo', repo, '--disk', NBD_URL, '--mover', 'solo']);
    await ok(['user', 'add', 'ops', '--role', 'operator', '--catalog', catalog, '--password-stdin'], 'movers horse battery staple\n');
    const token = (await ok(['token', 'create', '--user', 'ops', '--catalog', catalog])).trim();
    await ok(['user', 'add', 'solo', '--role', 'mover', '--catalog', catalog, '--password-stdin'], 'movers horse battery staple\n');
    const soloToken = (await ok(['token', 'create', '--user', 'solo', '--catalog', catalog])).trim();

    let server: Server | undefined;
    try {
      server = await startServer(repo, [
        '--state-dir',
        join(dir, 'state'),
        '--catalog',
        catalog,
        '--http-bind',
        HOST_IP,
        '--tls-cert',
        cert,
        '--tls-key',
        key,
        '--no-portmap',
        '--mover-timeout',
        '4s',
      ]);
      const base = server.httpUrl;
      assert.match(base, new RegExp(`^https://${HOST_IP.replaceAll('.', '\\.')}:\\d+/api/v1$`));
      const mover = (ns: string, name: string, group: string | undefined, as = token) =>
        inNs(ns, process.execPath, [
          BIN,
          'mover',
          '--server',
          base,
          '--token',
          as,
          '--name',
          name,
          ...(group === undefined ? [] : ['--group', group]),
          '--max-tasks',
          '1',
          '--ca-cert',
          cert,
        ]);
      const movers = {
        ma1: mover(NS.a.ns, 'ma1', 'ga'),
        ma2: mover(NS.a.ns, 'ma2', 'ga'),
        mb1: mover(NS.b.ns, 'mb1', 'gb'),
        solo: mover(NS.a.ns, 'solo', undefined, soloToken),
      };
      await until(
        'four live movers',
        async () => {
          const { movers: seen } = await api<{ movers: { name: string; alive: boolean }[] }>(base, token, ca, 'GET', '/movers');
          return seen.filter((m) => m.alive).length === 4 ? true : undefined;
        },
        30_000,
        200,
      );

      // A mover's token acts as its own mover alone, in no group, and reads nothing.
      await assert.rejects(api(base, soloToken, ca, 'GET', '/movers'), /: 403 .*LFB_ERR_FORBIDDEN/);
      await assert.rejects(api(base, soloToken, ca, 'GET', '/runs'), /: 403 /);
      await assert.rejects(api(base, soloToken, ca, 'POST', '/repositories/repo/jobs/alpha/run'), /: 403 /);
      await assert.rejects(api(base, soloToken, ca, 'POST', '/movers/mb1/tasks/1/result'), /: 403 .*user solo \(mover\) may act only as the data mover/);
      await assert.rejects(api(base, soloToken, ca, 'POST', '/movers/solo/poll', { group: 'ga' }), /: 403 .*may not join a group/);

      const runJob = async (job: string): Promise<number> => (await api<RunView>(base, token, ca, 'POST', `/repositories/repo/jobs/${job}/run`)).id;
      const ended = (id: number): Promise<RunView> =>
        until(
          `run ${id}`,
          async () => {
            const r = (await api<{ run: RunView }>(base, token, ca, 'GET', `/runs/${id}`)).run;
            return ['queued', 'running'].includes(r.state) ? undefined : r;
          },
          120_000,
          200,
        );
      const logOf = async (id: number): Promise<string> =>
        (await api<{ log: { message: string }[] }>(base, token, ca, 'GET', `/runs/${id}`)).log.map((l) => l.message).join('\n');

      const [a1, b1, g1] = [await runJob('alpha'), await runJob('beta'), await runJob('gamma')];
      for (const id of [a1, b1, g1]) assert.equal((await ended(id)).state, 'succeeded', await logOf(id));
      assert.match(await logOf(a1), /backup given to data mover ma[12]/);
      assert.match(await logOf(b1), /backup given to data mover mb1/);
      assert.match(await logOf(g1), /backup given to data mover solo/);

      // The next backup of alpha: its mover is killed while it reads; the other mover of the group takes it over.
      const a2 = await runJob('alpha');
      const taker = await until('a mover to take the backup', async () => /given to data mover (ma[12])/.exec(await logOf(a2))?.[1], 30_000, 50);
      await until(
        'the backup to be reading',
        async () => (movers[taker as 'ma1' | 'ma2'].log().includes(`run ${a2}: backup of alpha`) ? true : undefined),
        30_000,
        20,
      );
      movers[taker as 'ma1' | 'ma2'].proc.kill('SIGKILL');
      const a2End = await ended(a2);
      const log = await logOf(a2);
      assert.equal(a2End.state, 'succeeded', log);
      const other = taker === 'ma1' ? 'ma2' : 'ma1';
      assert.match(log, new RegExp(`data mover ${taker} lost the backup .*goes to another mover of ga`));
      assert.match(log, new RegExp(`backup given to data mover ${other} \\(hand-over 1\\)`));

      // No half point: alpha has its two points, beta its one, each restoring the disk of its own namespace.
      await kill9(server);
      server = undefined;
      // Without its server, a backup of a job that names a mover is refused here (nbd://127.0.0.1 is another disk on this host).
      const here = await cli(['backup', 'alpha', '--repo', repo]);
      assert.equal(here.code, 2, here.stderr);
      assert.match(here.stderr, /runs on data mover ga: .*--here.*\[LFB_ERR_INVALID_ARGUMENT\]/s);
      for (const [job, want, count] of [
        ['alpha', disks.a, 2],
        ['beta', disks.b, 1],
        ['gamma', disks.a, 1],
      ] as const) {
        const points = JSON.parse(await ok(['points', job, '--repo', repo, '--json'])) as { id: string }[];
        assert.equal(points.length, count, `${job}: ${points.map((p) => p.id).join(', ')}`);
        for (const p of points) {
          const to = join(dir, `${job}-${p.id}.img`);
          await ok(['restore', job, '--repo', repo, '--point', p.id, '--to', to]);
          assert.equal(sha256(await readFile(to)), sha256(want), `${job} point ${p.id}`);
        }
      }
      await ok(['verify', 'alpha', '--repo', repo, '--all']);
    } finally {
      if (server) await kill9(server);
    }
  },
);
