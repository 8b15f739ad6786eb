// The capacity tier on S3 (Ceph's radosgw, one cluster for this file): a repository in a folder whose sealed chains
// `lifeboat serve` moves to a bucket on the tier's schedule; the moved points restore bit-exact, pass verify, and are
// served by instant recovery (NBD, read with nbdcopy) from the bucket; the bucket opens as a repository of its own;
// retention removes a moved chain's objects; a tier run killed with -9 leaves every point restorable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { useCephS3, useClusterEnv } from './ceph-fixture.js';
import { kill9, startServer, type Server } from './server-helpers.js';
import { Api, adminToken } from './service-e2e-helpers.js';
import { BIN, MiB, cli, randomBytes, rng, scatterWrites, tempDir, until, type ListedPoint } from './helpers.js';

const run = promisify(execFile);
const ceph = useCephS3();
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function ok(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await cli(args, env);
  assert.equal(r.code, 0, `lifeboat ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const points = async (repo: string): Promise<ListedPoint[]> => JSON.parse(await ok(['points', 'vm', '--repo', repo, '--json'])) as ListedPoint[];

interface Scene {
  readonly dir: string;
  readonly repo: string;
  readonly capacity: string;
  readonly disk: string;
  /** The disk's SHA-256 at each point. */
  readonly at: Map<string, string>;
  backup(extra?: string[]): Promise<string>;
  server?: Server | undefined;
}

async function withScene(label: string, seed: number, diskMiB: number, fn: (s: Scene) => Promise<void>): Promise<void> {
  const t = await tempDir(`lifeboat-tier-s3-${label}-`);
  const s: { server?: Server | undefined } = {};
  try {
    useClusterEnv(ceph(), t.dir);
    const rand = rng(seed);
    const repo = join(t.dir, 'repo');
    const disk = join(t.dir, 'vm.img');
    const content = randomBytes(rand, diskMiB * MiB);
    await writeFile(disk, content);
    await ok(['repo', 'init', repo, '--block-size', '256K']);
    await ok(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--method', 'forward', '--retain-points', '10']);
    const at = new Map<string, string>();
    await fn(
      Object.assign(s, {
        dir: t.dir,
        repo,
        capacity: `s3://${ceph().bucket(label)}/cap`,
        disk,
        at,
        async backup(extra: string[] = []) {
          if (at.size > 0) await scatterWrites(disk, content, rand, 3, 100_000);
          const r = JSON.parse(await ok(['backup', 'vm', '--repo', repo, '--json', ...extra])) as { pointId: string };
          at.set(r.pointId, sha(await readFile(disk)));
          return r.pointId;
        },
      }),
    );
  } finally {
    if (s.server) await kill9(s.server);
    await t.cleanup();
  }
}

async function allRestore(s: Scene, repo = s.repo): Promise<number> {
  const listed = await points(repo);
  let n = 0;
  for (const [id, want] of s.at) {
    if (!listed.some((p) => p.id === id)) continue;
    const to = join(s.dir, 'restore.img');
    await ok(['restore', 'vm', '--repo', repo, '--point', id, '--to', to, '--force']);
    assert.equal(sha(await readFile(to)), want, `point ${id} from ${repo}`);
    n++;
  }
  return n;
}

const backupFiles = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((n) => /\.(vbk|vib|vrb)$/.test(n)).sort();

test(
  'serve moves sealed chains to S3 on the tier schedule; moved points restore, verify and boot-serve (NBD) from the bucket; retention removes their objects',
  { timeout: 5 * 60_000 },
  () =>
    withScene('move', 21, 8, async (s) => {
      const old1 = await s.backup();
      const old2 = await s.backup();
      await s.backup(['--active-full']);
      await s.backup();
      const files = (await points(s.repo)).map((p) => p.file);
      // The server runs before the repository has a tier: it takes the setting up when it comes.
      const token = await adminToken(s.repo);
      s.server = await startServer(s.repo, ['--no-portmap']);
      const api = await Api.connect(s.server.httpUrl, token);
      assert.deepEqual(await api.call('GET', '/api/v1/repositories/{repo}/tier', { repo: 'repo' }), { tier: null });
      await ok(['tier', 'set', '--repo', s.repo, '--capacity', s.capacity, '--move-after-days', '0', '--schedule', '*/2 * * * * *']);
      const jobDir = join(s.repo, 'jobs', 'vm');
      await until('the server to move the old chain', async () => ((await backupFiles(jobDir)).length === 2 ? true : undefined), 60_000, 200);
      assert.deepEqual(await backupFiles(jobDir), files.slice(2).sort());
      await until('the tier run recorded', async () => (/kind=tier seconds=\S+ bytes_read=\d+/.test(s.server!.log()) ? true : undefined), 30_000, 200);
      assert.match(s.server.log(), /lifeboat run=\d+ job=capacity-tier repo=\S+ state=succeeded trigger=schedule kind=tier/);

      // The API says where each file is (the answers checked against the OpenAPI document).
      const { tier: shown } = await api.call<{ tier: { capacity: string; moveAfterDays: number; jobs: { files: { file: string; place: string }[] }[] } }>(
        'GET',
        '/api/v1/repositories/{repo}/tier',
        { repo: 'repo' },
      );
      assert.equal(shown.capacity, s.capacity);
      assert.deepEqual(
        shown.jobs[0]!.files.map((f) => [f.file, f.place]),
        files.map((f, i) => [f, i < 2 ? 'capacity' : 'local']).sort((a, b) => a[0]!.localeCompare(b[0]!)),
      );

      // Instant recovery of a moved point: the server reads its blocks from the bucket.
      await ok(['instant', 'start', 'vm', '--repo', s.repo, '--point', old2, '--name', 'old']);
      const out = join(s.dir, 'nbd.img');
      await run('nbdcopy', [`nbd://127.0.0.1:${s.server.nbdPort}/old/disk0`, out]);
      assert.equal(sha(await readFile(out)), s.at.get(old2));
      await ok(['instant', 'stop', 'old', '--repo', s.repo]);

      assert.equal(await allRestore(s), 4);
      assert.match(await ok(['verify', 'vm', '--repo', s.repo, '--all']), /^OK: .* in 4 file\(s\), 4 point\(s\) checked/m);
      // The bucket alone is a repository of the moved points.
      assert.deepEqual(
        (await points(s.capacity)).map((p) => p.id),
        [old1, old2],
      );
      assert.equal(await allRestore(s, s.capacity), 2);

      // Retention drops the moved chain: its objects go with it (the server's next tier run sees nothing to do).
      await ok(['job', 'set', 'vm', '--repo', s.repo, '--retain-points', '2']);
      await s.backup(['--active-full']);
      assert.ok(!(await points(s.repo)).some((p) => p.id === old1 || p.id === old2));
      assert.ok(!(await points(s.capacity)).some((p) => p.id === old1 || p.id === old2), "the moved chain's objects went with it");
      assert.equal(await allRestore(s), 3);
      // Run now through the API: queued, run by the server, recorded.
      const asked = await api.call<{ id: number; kind: string; job: string }>('POST', '/api/v1/repositories/{repo}/tier/run', { repo: 'repo' }, {}, 202);
      assert.deepEqual([asked.kind, asked.job], ['tier', 'capacity-tier']);
      const ended = await until(
        'the asked tier run to end',
        async () => {
          const r = (await api.call<{ run: { state: string; trigger: string } }>('GET', '/api/v1/runs/{id}', { id: String(asked.id) })).run;
          return ['queued', 'running'].includes(r.state) ? undefined : r;
        },
        30_000,
        200,
      );
      assert.deepEqual([ended.state, ended.trigger], ['succeeded', 'api']);
    }),
);

test('a tier run to S3 killed with -9 at random moments leaves every point restorable; the next run finishes the move', { timeout: 5 * 60_000 }, () =>
  withScene('kill', 22, 48, async (s) => {
    await s.backup();
    await s.backup();
    await s.backup(['--active-full']);
    await ok(['tier', 'set', '--repo', s.repo, '--capacity', s.capacity, '--move-after-days', '0']);
    const rand = rng(5);
    let cut = 0;
    for (let attempt = 0; attempt < 3; attempt++) {
      const p = spawn(process.execPath, [BIN, 'tier', 'run', '--repo', s.repo], { env: process.env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<NodeJS.Signals | null>((r) => p.once('exit', (_code, signal) => r(signal)));
      // Cut once the run holds the tier's lock (its copies begin), at a moment of the copy that varies.
      const lock = join(s.repo, 'capacity-tier.lock');
      await until(
        'the run to take the tier lock',
        async () => ((await readFile(lock, 'utf8').catch(() => '')).includes(`"pid":${p.pid},`) ? true : undefined),
        30_000,
        5,
      );
      await new Promise((r) => setTimeout(r, Math.floor(rand() * 400)));
      p.kill('SIGKILL');
      if ((await exited) === 'SIGKILL') cut++;
      else assert.equal(stderr, '', 'a run that ended by itself said nothing wrong');
      assert.equal(await allRestore(s), 3);
    }
    assert.ok(cut > 0, 'at least one run was cut before its end');
    const done = JSON.parse(await ok(['tier', 'run', '--repo', s.repo, '--json'])) as { freed: { file: string }[] };
    assert.deepEqual(await backupFiles(join(s.repo, 'jobs', 'vm')), [(await points(s.repo))[2]!.file]);
    assert.ok(done.freed.length <= 2);
    assert.equal(await allRestore(s), 3);
    assert.match(await ok(['verify', 'vm', '--repo', s.repo, '--all']), /^OK: /m);
  }),
);
